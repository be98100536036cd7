//! SRSNet on an NVIDIA GPU (issue "The Jetson path for real"): the parity fixtures in f16
//! (`seg_logits` within 2e-2·max(1, max|ref|), masks agreeing on ≥ 99.9 % of pixels) and f32
//! (within 1e-4·max(1, max|ref|)), and the fused DPConv op against Candle's composition.
//!
//! These tests need a build with `--features cuda` and a GPU; on a machine without one each
//! says SKIPPED and passes. `scripts/gpu-check.sh` builds them here and runs them there. The
//! same f16 graph is checked on the CPU in every build by `tests/f16_graph.rs`.
#![cfg(feature = "cuda")]

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use srsnet::model::{ModelConfig, Srsnet, Weights};
use std::path::Path;

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("SKIPPED: no usable CUDA device 0 ({e})");
            None
        }
    }
}

fn load(dev: &Device, dtype: DType, recon: &Path, seg: &Path, cfg: &ModelConfig) -> Srsnet {
    let w = |p: &Path| Weights::new(store(p), dtype, dev).with_bn_folding(true);
    Srsnet::load(&w(recon), &w(seg), cfg).unwrap()
}

fn check(dev: &Device, dtype: DType, tol: f32, cfg: &ModelConfig, dir: &Path, prefix: &str) {
    let model = load(
        dev,
        dtype,
        &dir.join(format!("{prefix}_recon.safetensors")),
        &dir.join(format!("{prefix}_seg.safetensors")),
        cfg,
    );
    let io = dir.join(format!("{prefix}_io.safetensors"));
    let input = io_tensor(&io, "input").to_dtype(dtype).unwrap().to_device(dev).unwrap();
    let (y, trace) = model.trace(&input).unwrap();
    let on_cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    let label = format!("{prefix} {dtype:?} on the GPU");
    if dtype == DType::F32 {
        assert_close(
            &format!("{label} recon_x3_0"),
            &on_cpu(&y),
            &io_tensor(&io, "recon_x3_0"),
            tol,
        );
        assert_close(
            &format!("{label} seg_dpconv_out"),
            &on_cpu(&trace.dpconv_out),
            &io_tensor(&io, "seg_dpconv_out"),
            tol,
        );
    }
    let logits = on_cpu(&trace.logits);
    let reference = io_tensor(&io, "seg_logits");
    assert_close(&format!("{label} seg_logits"), &logits, &reference, tol);
    let agree = sign_agreement(&logits, &reference);
    eprintln!("{label}: masks agree on {:.4} %", 100.0 * agree);
    assert!(agree >= 0.999, "{label}: masks agree on {agree}");
}

#[test]
fn tiny_fixture_on_the_gpu_in_f16_and_f32() {
    let Some(dev) = gpu() else { return };
    let dir = fixture("");
    check(&dev, DType::F16, 2e-2, &tiny_config(), &dir, "tiny");
    check(&dev, DType::F32, 1e-4, &tiny_config(), &dir, "tiny");
}

#[test]
fn full_fixture_on_the_gpu_in_f16_and_f32() {
    let Some(dev) = gpu() else { return };
    let Some(dir) = shared("fixtures/parity") else {
        return;
    };
    check(&dev, DType::F16, 2e-2, &ModelConfig::official(), &dir, "full");
    check(&dev, DType::F32, 1e-4, &ModelConfig::official(), &dir, "full");
}

/// The fused op (one launch for the batch) equals Candle's per-frame composition on the GPU,
/// and the CPU twin, for a batch of two frames with different kernels, in f32 and f16.
#[test]
fn fused_dpconv_matches_the_candle_composition_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let io = fixture("tiny_io.safetensors");
    let cfg = tiny_config();
    let x = io_tensor(&io, "seg_x3_0_pre_dpconv");
    let y = io_tensor(&io, "recon_x3_0");
    let cpu = load(
        &Device::Cpu,
        DType::F32,
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        &cfg,
    );
    let reference = cpu.seg().dpconv().forward_reference_form(&x, &y).unwrap();
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 2e-3)] {
        let model = load(
            &dev,
            dtype,
            &fixture("tiny_recon.safetensors"),
            &fixture("tiny_seg.safetensors"),
            &cfg,
        );
        let dp = model.seg().dpconv();
        let (xg, yg) = (
            x.to_dtype(dtype).unwrap().to_device(&dev).unwrap(),
            y.to_dtype(dtype).unwrap().to_device(&dev).unwrap(),
        );
        let fused = dp.forward(&xg, &yg).unwrap();
        let composed = dp.forward_reference_form(&xg, &yg).unwrap();
        let back = |t: &Tensor| t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
        assert_close(
            &format!("fused vs reference form, {dtype:?}"),
            &back(&fused),
            &reference,
            tol,
        );
        assert_close(
            &format!("fused vs GPU composition, {dtype:?}"),
            &back(&fused),
            &back(&composed),
            10.0 * tol,
        );
    }
}

/// A GPU index that does not exist is an error naming it and what to do.
#[test]
fn a_missing_gpu_index_is_a_clear_error() {
    let err = srsnet::device::parse_device("cuda:97").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("cuda:97") && msg.contains("--device"), "{msg}");
}

/// Training on the GPU in f32 (`--device cuda` for `srsnet train`): three SGD steps of each
/// stage reproduce the reference's losses and final tensors, as `tests/train_parity.rs` checks
/// on the CPU (losses 1e-4 relative; tensors 1e-4·max(1, max|ref|)).
#[test]
fn training_steps_on_the_gpu_match_the_reference() {
    use srsnet::model::weights::VarSource;
    use srsnet::train::optim::SgdConfig;
    use srsnet::train::stages::{ReconStage, SegStage};
    let Some(dev) = gpu() else { return };
    let Some(fx) = shared("fixtures/train/tiny_train.safetensors") else {
        return;
    };
    let cfg = tiny_config();
    let on = |name: &str| io_tensor(&fx, name).to_device(&dev).unwrap();
    let (x, mask) = (on("input"), on("mask"));
    let store = common::store(&fx);
    let losses = |name: &str, ours: &[f64]| {
        let reference = io_tensor(&fx, name)
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for (a, b) in ours.iter().zip(&reference) {
            assert!((a - b).abs() <= 1e-4 * b.abs(), "{name}: ours {a} reference {b}");
        }
    };
    let finals = |vars: &VarSource, from: &str, to: &str| {
        for (name, var) in vars.vars() {
            let ours = var.as_tensor().to_device(&Device::Cpu).unwrap();
            assert_close(&name, &ours, &io_tensor(&fx, &name.replacen(from, to, 1)), 1e-4);
        }
    };
    let rvars = VarSource::new(Some(store.clone()), 0);
    let rw = Weights::from_vars(rvars.clone(), DType::F32, &dev).pp("r_init");
    let mut r = ReconStage::new(&rw, rvars.clone(), &cfg, SgdConfig::default(), 3).unwrap();
    let rl: Vec<f64> = (0..3).map(|_| r.step(&x).unwrap()).collect();
    losses("r_losses", &rl);
    finals(&rvars, "r_init.", "r_final.");
    let svars = VarSource::new(Some(store.clone()), 0);
    let sw = Weights::from_vars(svars.clone(), DType::F32, &dev).pp("s_init");
    let recon = Weights::new(store, DType::F32, &dev).pp("r_final");
    let mut s = SegStage::new(&sw, svars.clone(), &recon, &cfg, SgdConfig::default(), 3).unwrap();
    let sl: Vec<f64> = (0..3).map(|_| s.step(&x, &mask).unwrap()).collect();
    losses("s_losses", &sl);
    finals(&svars, "s_init.", "s_final.");
}
