use candle_core::{DType, Device, Tensor};
use srsnet::model::weights::VarSource;
use srsnet::model::{ModelConfig, Weights};
use srsnet::train::optim::SgdConfig;
use srsnet::train::stages::{ReconStage, SegStage};
use std::time::Instant;
fn main() {
    let preset = std::env::args().nth(1).unwrap_or("lite".into());
    let size: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(256);
    let cfg = ModelConfig::from_preset_or_path(&preset).unwrap();
    let d = Device::Cpu;
    let x = (Tensor::randn(0f32, 1., (8, cfg.in_channels, size, size), &d).unwrap() * 0.3).unwrap();
    let m = Tensor::zeros((8, 1, size, size), DType::F32, &d).unwrap();
    let rv = VarSource::new(None, 1);
    let mut r = ReconStage::new(
        &Weights::from_vars(rv.clone(), DType::F32, &d),
        rv,
        &cfg,
        SgdConfig::default(),
        100,
    )
    .unwrap();
    r.step(&x).unwrap();
    let t0 = Instant::now();
    r.step(&x).unwrap();
    println!(
        "{preset} recon step batch 8 @{size}: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let sv = VarSource::new(None, 2);
    let rvw = VarSource::new(None, 3);
    let rw = Weights::from_vars(rvw, DType::F32, &d);
    let mut s = SegStage::new(
        &Weights::from_vars(sv.clone(), DType::F32, &d),
        sv,
        &rw,
        &cfg,
        SgdConfig::default(),
        100,
    )
    .unwrap();
    s.step(&x, &m).unwrap();
    let t0 = Instant::now();
    s.step(&x, &m).unwrap();
    println!("{preset} seg step batch 8 @{size}: {:.2} s", t0.elapsed().as_secs_f64());
}
