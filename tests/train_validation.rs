//! Validation during training runs S through the plan engine on the folded model (as `eval`
//! does); its logits must equal the training graph's in eval mode, after training steps have
//! moved the BatchNorm statistics away from their initial values.

use candle_core::{DType, Device, Tensor};
use srsnet::image_io::Frame;
use srsnet::model::weights::VarSource;
use srsnet::model::{ModelConfig, Weights};
use srsnet::preprocess::{Geometry, PreprocessSpec};
use srsnet::train::optim::SgdConfig;
use srsnet::train::stages::SegStage;
use srsnet::train::trainer::SegRunner;

fn frame(w: usize, h: usize, seed: usize) -> Frame {
    let data = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            0.4 + 0.2 * ((x * 0.37 + seed as f32).sin() * (y * 0.21).cos()) + if i % 97 == seed { 0.3 } else { 0.0 }
        })
        .collect();
    Frame::new(w, h, 1, data).unwrap()
}

#[test]
fn plan_validation_equals_the_training_graph() -> anyhow::Result<()> {
    let cfg = ModelConfig::from_preset_or_path("lite")?;
    let dev = Device::Cpu;
    let seg_vars = VarSource::new(None, 7);
    let recon_vars = VarSource::new(None, 8);
    let seg_w = Weights::from_vars(seg_vars.clone(), DType::F32, &dev).pp("seg");
    let recon_w = Weights::from_vars(recon_vars, DType::F32, &dev).pp("recon");
    let mut stage = SegStage::new(&seg_w, seg_vars, &recon_w, &cfg, SgdConfig::default(), 10)?;
    // Two steps: S's running statistics and weights move, so folding has real work to do.
    let x = Tensor::randn(0f32, 1.0, (2, 1, 32, 32), &dev)?;
    let mask = Tensor::randn(0f32, 1.0, (2, 1, 32, 32), &dev)?
        .gt(1.5)?
        .to_dtype(DType::F32)?;
    for _ in 0..2 {
        stage.step(&x, &mask)?;
    }
    let spec = PreprocessSpec {
        channels: 1,
        mean: vec![0.45],
        std: vec![0.2],
        post_scale: 1.0,
        geometry: Geometry::Pad { multiple: 8 },
        motion: None,
    };
    let mut plan = SegRunner::new(&stage, &dev)?;
    assert!(matches!(plan, SegRunner::Plan(..)));
    let mut candle = SegRunner::Candle(&stage, dev.clone());
    for (w, h, seed) in [(40, 24, 1), (37, 29, 2), (64, 64, 3)] {
        let f = frame(w, h, seed);
        let (a, b) = (plan.logits(&f, &spec)?, candle.logits(&f, &spec)?);
        assert_eq!(a.len(), w * h);
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{w}×{h}: max |plan − candle| {worst} (scale {scale})"
        );
        // Not a vacuous comparison: the logits vary across the frame.
        let spread = b.iter().fold(f32::MIN, |m, v| m.max(*v)) - b.iter().fold(f32::MAX, |m, v| m.min(*v));
        assert!(spread > 1e-3, "{spread}");
    }
    Ok(())
}
