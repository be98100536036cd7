//! Parity of the CPU inference plan with the reference fixtures and with the Candle path, on
//! every instruction set this machine has. Tolerance 1e-4·max(1, max|ref|), as for the Candle
//! port: f32 rounding over ~100 layers summed in a different order.

mod common;
use candle_core::{Device, Tensor};
use common::*;
use srsnet::engine::{Isa, Plan, ThreadPool};
use srsnet::model::{ModelConfig, Srsnet};
use std::path::Path;

const F32_TOL: f32 = 1e-4;

fn vec_tensor(v: Vec<f32>, like: &Tensor) -> Tensor {
    Tensor::from_vec(v, like.dims(), &Device::Cpu).unwrap()
}

/// Runs the plan frame by frame on `input` (B, C, H, W): (R.x3_0, DPConv out, logits) stacked.
fn run_plan(model: &Srsnet, input: &Tensor, isa: Isa, threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (b, _, h, w) = input.dims4().unwrap();
    let pool = ThreadPool::new(threads).unwrap();
    let mut plan = Plan::build(model, h, w, isa).unwrap();
    let (mut ys, mut dps, mut logits) = (vec![], vec![], vec![]);
    for i in 0..b {
        let x = input.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![0.0; h * w];
        plan.run(&pool, &x, &mut out).unwrap();
        let (y, dp) = plan.trace();
        ys.extend(y);
        dps.extend(dp);
        logits.extend(out);
    }
    (ys, dps, logits)
}

fn check_fixture(cfg: &ModelConfig, recon: &Path, seg: &Path, io: &Path) {
    let model = Srsnet::load(&weights(recon, true), &weights(seg, true), cfg).unwrap();
    let input = io_tensor(io, "input");
    for isa in Isa::available() {
        for threads in [1, 2] {
            let (y, dp, logits) = run_plan(&model, &input, isa, threads);
            let label = format!("{} {threads}t", isa.name());
            let r = io_tensor(io, "recon_x3_0");
            assert_close(&format!("{label} recon_x3_0"), &vec_tensor(y, &r), &r, F32_TOL);
            let r = io_tensor(io, "seg_dpconv_out");
            assert_close(&format!("{label} seg_dpconv_out"), &vec_tensor(dp, &r), &r, F32_TOL);
            let r = io_tensor(io, "seg_logits");
            assert_close(&format!("{label} seg_logits"), &vec_tensor(logits, &r), &r, F32_TOL);
        }
    }
}

#[test]
fn plan_matches_reference_on_the_tiny_fixture() {
    check_fixture(
        &tiny_config(),
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        &fixture("tiny_io.safetensors"),
    );
}

#[test]
fn plan_matches_reference_on_the_full_fixture() {
    let Some(dir) = shared("fixtures/parity") else {
        return;
    };
    check_fixture(
        &ModelConfig::official(),
        &dir.join("full_recon.safetensors"),
        &dir.join("full_seg.safetensors"),
        &dir.join("full_io.safetensors"),
    );
}

/// An untrained model of `cfg` (PyTorch's default initialisation, seeded).
fn untrained(cfg: &ModelConfig, seed: u64) -> Srsnet {
    use srsnet::model::weights::VarSource;
    use srsnet::model::Weights;
    let d = Device::Cpu;
    let r = Weights::from_vars(VarSource::new(None, seed), candle_core::DType::F32, &d);
    let s = Weights::from_vars(VarSource::new(None, seed + 1), candle_core::DType::F32, &d);
    Srsnet::load(&r, &s, cfg).unwrap()
}

/// The plan equals the Candle path on random inputs of several sizes: the smallest legal 8×8
/// (1×1 at the bottleneck, where every row is a vector tail), non-square, and 640×512.
#[test]
fn plan_equals_candle_on_random_inputs_of_several_sizes() {
    let cases = [
        (ModelConfig::lite(), 8, 8),
        (ModelConfig::lite(), 24, 40),
        (ModelConfig::lite(), 512, 640),
        (tiny_config(), 40, 24),
        (ModelConfig::official(), 16, 72),
    ];
    for (i, (cfg, h, w)) in cases.into_iter().enumerate() {
        let model = untrained(&cfg, 10 + i as u64);
        let x = Tensor::randn(0f32, 1.0, (2, cfg.in_channels, h, w), &Device::Cpu).unwrap();
        let (ry, trace) = model.trace(&x).unwrap();
        for isa in Isa::available() {
            let (y, dp, logits) = run_plan(&model, &x, isa, 2);
            let label = format!("{} {h}x{w} {}", cfg.name, isa.name());
            assert_close(&format!("{label} recon_x3_0"), &vec_tensor(y, &ry), &ry, F32_TOL);
            let r = &trace.dpconv_out;
            assert_close(&format!("{label} dpconv_out"), &vec_tensor(dp, r), r, F32_TOL);
            let r = &trace.logits;
            assert_close(&format!("{label} logits"), &vec_tensor(logits, r), r, F32_TOL);
        }
    }
}

/// Sizes the network cannot take are errors naming the size, before anything is allocated.
#[test]
fn sizes_the_network_cannot_take_are_refused_with_the_size_named() {
    let model = untrained(&ModelConfig::lite(), 3);
    for (h, w) in [(0, 64), (64, 0), (12, 64), (64, 100)] {
        let err = Plan::build(&model, h, w, Isa::Scalar).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{w}×{h}")) && err.contains("multiples of 8"),
            "{err}"
        );
    }
    let err = Plan::build(&model, 16384, 16384, Isa::Scalar).unwrap_err().to_string();
    assert!(err.contains("16384×16384") && err.contains("largest frame"), "{err}");
    // A plan whose buffers would pass the memory limit is refused, naming both.
    let err = Plan::build_within(&model, 512, 640, Isa::Scalar, 8 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("640×512") && err.contains("over the limit of 8 MiB"),
        "{err}"
    );
    let official = untrained(&ModelConfig::official(), 4);
    match Plan::build(&official, 2048, 4096, Isa::Scalar) {
        Ok(p) => assert!(p.memory().0 <= srsnet::engine::PLAN_MEMORY_LIMIT),
        Err(e) => assert!(e.to_string().contains("over the limit"), "{e}"),
    }
    // A plan refuses a frame of the wrong size rather than reading past it.
    let pool = ThreadPool::new(1).unwrap();
    let mut plan = Plan::build(&model, 16, 16, Isa::Scalar).unwrap();
    let err = plan.run(&pool, &[0.0; 100], &mut [0.0; 256]).unwrap_err().to_string();
    assert!(err.contains("got 100 input"), "{err}");
}
