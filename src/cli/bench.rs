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
