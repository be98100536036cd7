//! Criterion benchmark of the second stage (`verify::Verifier::filter`: the frame's median and
//! robust std, then each target's features and score) with the shipped weights' verifier, on
//! frames of the sizes users run (640×512, 1280×1024) holding 5 or 40 targets. Its cost is to
//! be read against the net's forward pass at the same size (`srsnet bench --size WxH`).
//! Run: `cargo bench --bench verifier`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use srsnet::detect::{Detection, TargetRule};
use srsnet::image_io::Frame;
use srsnet::model::weights_file::WeightsFile;

/// A frame of smooth background with pixel noise and `n` 3×3 spots, and the probability map a
/// net would give them (0.9 on each spot, 0 elsewhere).
fn scene(w: usize, h: usize, n: usize) -> (Frame, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut data: Vec<f32> = (0..w * h)
        .map(|i| 0.3 + 0.1 * ((i % w) as f32 / w as f32) + 0.02 * noise())
        .collect();
    let mut prob = vec![0.0f32; w * h];
    for k in 0..n {
        let (cx, cy) = (20 + (k * 97) % (w - 40), 20 + (k * 61) % (h - 40));
        for y in cy - 1..=cy + 1 {
            for x in cx - 1..=cx + 1 {
                data[y * w + x] = 0.8;
                prob[y * w + x] = 0.9;
            }
        }
    }
    (Frame::new(w, h, 1, data).expect("a valid frame"), prob)
}

fn filter(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/srsnet-lite.safetensors");
    let verifier = WeightsFile::open(&path)
        .expect("the shipped weights")
        .verifier()
        .expect("the shipped weights carry a verifier");
    let mut group = c.benchmark_group("verifier_filter");
    group.sample_size(20);
    for (w, h) in [(640, 512), (1280, 1024)] {
        for n in [5, 40] {
            let (frame, prob) = scene(w, h, n);
            let det = Detection::from_prob(w, h, prob, TargetRule::plain(0.5));
            assert_eq!(det.targets.len(), n);
            group.bench_function(format!("{w}x{h}_{n}_targets"), |b| {
                b.iter_batched(
                    || det.clone(),
                    |mut d| verifier.filter(&mut d, &frame),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, filter);
criterion_main!(benches);
