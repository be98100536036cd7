//! Once built, the inference plan allocates nothing per frame: a counting global allocator
//! sees zero allocations over several steady-state frames, with one thread and with several.

use srsnet::engine::{Isa, Plan, ThreadPool};
use srsnet::model::weights::VarSource;
use srsnet::model::{ModelConfig, Srsnet, Weights};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_frame_allocates_nothing_in_the_steady_state() {
    let d = candle_core::Device::Cpu;
    let cfg = ModelConfig::lite();
    let r = Weights::from_vars(VarSource::new(None, 1), candle_core::DType::F32, &d);
    let s = Weights::from_vars(VarSource::new(None, 2), candle_core::DType::F32, &d);
    let model = Srsnet::load(&r, &s, &cfg).unwrap();
    let (h, w) = (64, 96);
    let input: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
    let mut logits = vec![0.0; h * w];
    for threads in [1, 2, 3] {
        for isa in Isa::available() {
            let pool = ThreadPool::new(threads).unwrap();
            let mut plan = Plan::build(&model, h, w, isa).unwrap();
            // The first frame may touch lazily initialised runtime state (thread-locals, futexes).
            plan.run(&pool, &input, &mut logits).unwrap();
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            for _ in 0..5 {
                plan.run(&pool, &input, &mut logits).unwrap();
            }
            let allocs = ALLOCATIONS.load(Ordering::SeqCst) - before;
            assert_eq!(
                allocs,
                0,
                "{threads} threads, {}: {allocs} allocations in 5 frames",
                isa.name()
            );
            assert!(logits.iter().all(|v| v.is_finite()) && logits.iter().any(|&v| v != logits[0]));
        }
    }
}
