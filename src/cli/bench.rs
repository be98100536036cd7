//! `srsnet bench`: latency of one forward pass (R encoder + S) on one frame.

use crate::device::compute_dtype;
use crate::model::weights_file::WeightsFile;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::path::Path;
use std::time::Instant;

pub struct BenchResult {
    pub preset: String,
    pub size: usize,
    pub iters: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// Times `iters` forward passes on a `size`×`size` random frame after `warmup` untimed ones.
pub fn forward_latency(
    weights: &Path,
    device: &Device,
    size: usize,
    warmup: usize,
    iters: usize,
) -> Result<BenchResult> {
    let file = WeightsFile::open(weights)?;
    let dtype = compute_dtype(device);
    let model = file.load_model(device, dtype, true)?;
    let x = Tensor::randn(0f32, 1.0, (1, file.config.in_channels, size, size), device)?.to_dtype(dtype)?;
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t0 = Instant::now();
        let y = model.forward(&x)?;
        // Reading a value back waits for asynchronous (CUDA) work to finish.
        let _ = y
            .flatten_all()?
            .get(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(BenchResult {
        preset: file.config.name.clone(),
        size,
        iters,
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        p50_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
    })
}

/// What `srsnet bench --train` measures.
pub struct TrainBench {
    pub images_per_s: f64,
    pub seconds_per_step: f64,
    /// The process's peak resident memory (Linux `VmHWM`), when the platform reports it.
    pub peak_rss_bytes: Option<u64>,
}

/// The peak resident set size of this process so far, from `/proc/self/status` (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Throughput of training steps (forward + backward + SGD update) of one stage, after one
/// untimed warm-up step.
pub fn train_throughput(preset: &str, stage: &str, batch: usize, size: usize, steps: usize) -> Result<TrainBench> {
    use crate::model::weights::VarSource;
    use crate::model::{ModelConfig, Weights};
    use crate::train::optim::SgdConfig;
    use crate::train::stages::{ReconStage, SegStage};
    let cfg = ModelConfig::from_preset_or_path(preset)?;
    let d = Device::Cpu;
    let x = (Tensor::randn(0f32, 1.0, (batch, cfg.in_channels, size, size), &d)? * 0.3)?;
    let mask = Tensor::zeros((batch, 1, size, size), candle_core::DType::F32, &d)?;
    let vars = VarSource::new(None, 1);
    let w = Weights::from_vars(vars.clone(), candle_core::DType::F32, &d);
    let mut step: Box<dyn FnMut() -> Result<f64>> = match stage {
        "recon" => {
            let mut s = ReconStage::new(&w, vars, &cfg, SgdConfig::default(), steps + 1)?;
            Box::new(move || Ok(s.step(&x)?))
        }
        "seg" => {
            let recon = Weights::from_vars(VarSource::new(None, 2), candle_core::DType::F32, &d);
            let mut s = SegStage::new(&w, vars, &recon, &cfg, SgdConfig::default(), steps + 1)?;
            Box::new(move || Ok(s.step(&x, &mask)?))
        }
        other => anyhow::bail!("stage `{other}`: expected recon or seg"),
    };
    step()?; // warm-up
    let t0 = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(TrainBench {
        images_per_s: (steps * batch) as f64 / secs,
        seconds_per_step: secs / steps as f64,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
