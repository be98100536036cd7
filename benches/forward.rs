//! Criterion benchmark of one inference forward pass (R encoder + S, BatchNorm folded, f32 CPU)
//! on a 256×256 frame, for the `lite` and `official` presets with untrained weights (speed does
//! not depend on the values): the CPU plan (best instruction set, physical cores) and the
//! Candle graph. Run: `cargo bench --bench forward`.

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use srsnet::engine::{default_threads, Isa, Plan, ThreadPool};
use srsnet::model::weights_file::{initialised, write, WeightsFile};
use srsnet::model::ModelConfig;
use srsnet::preprocess::PreprocessSpec;

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_256");
    group.sample_size(10);
    for preset in ["lite", "official"] {
        let cfg = ModelConfig::from_preset_or_path(preset).unwrap();
        let path = std::env::temp_dir().join(format!("srsnet-bench-{preset}.safetensors"));
        let spec = if cfg.in_channels == 3 {
            PreprocessSpec::reference()
        } else {
            PreprocessSpec::gray_default()
        };
        write(
            &path,
            &initialised(&cfg, 1).unwrap(),
            &cfg,
            &spec,
            &serde_json::json!({}),
            DType::F16,
        )
        .unwrap();
        let model = WeightsFile::open(&path)
            .unwrap()
            .load_model(&Device::Cpu, DType::F32, true)
            .unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, cfg.in_channels, 256, 256), &Device::Cpu).unwrap();
        let pool = ThreadPool::new(default_threads()).unwrap();
        let mut plan = Plan::build(&model, 256, 256, Isa::best()).unwrap();
        let input = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut logits = vec![0.0; 256 * 256];
        group.bench_function(format!("{preset}/plan"), |b| {
            b.iter(|| plan.run(&pool, &input, &mut logits).unwrap())
        });
        group.bench_function(format!("{preset}/candle"), |b| b.iter(|| model.forward(&x).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
