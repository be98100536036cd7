//! Parity of the Candle port with the reference PyTorch implementation (fixtures made from
//! fidshu/SRSNet @ 3ec478a in f32, eval mode). Tolerance 1e-4·max(1, max|ref|): f32 rounding
//! accumulated over ~100 layers, with BN folded or not.

mod common;
use common::*;
use srsnet::model::{ModelConfig, ReconNet, Srsnet};
use std::path::Path;

const F32_TOL: f32 = 1e-4;

fn check_all(cfg: &ModelConfig, recon: &Path, seg: &Path, io: &Path, fold: bool) {
    let label = if fold { "folded" } else { "unfolded" };
    let input = io_tensor(io, "input");
    let r = ReconNet::load(&weights(recon, fold), cfg).unwrap();
    assert_close(
        &format!("{label} recon_output"),
        &r.forward(&input).unwrap(),
        &io_tensor(io, "recon_output"),
        F32_TOL,
    );
    let model = Srsnet::load(&weights(recon, fold), &weights(seg, fold), cfg).unwrap();
    let (y, trace) = model.trace(&input).unwrap();
    assert_close(
        &format!("{label} recon_x3_0"),
        &y,
        &io_tensor(io, "recon_x3_0"),
        F32_TOL,
    );
    assert_close(
        &format!("{label} seg_x3_0_pre_dpconv"),
        &trace.x3_0_pre_dpconv,
        &io_tensor(io, "seg_x3_0_pre_dpconv"),
        F32_TOL,
    );
    assert_close(
        &format!("{label} seg_dpconv_out"),
        &trace.dpconv_out,
        &io_tensor(io, "seg_dpconv_out"),
        F32_TOL,
    );
    assert_close(
        &format!("{label} seg_logits"),
        &trace.logits,
        &io_tensor(io, "seg_logits"),
        F32_TOL,
    );
}

#[test]
fn tiny_matches_reference_unfolded() {
    check_all(
        &tiny_config(),
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        &fixture("tiny_io.safetensors"),
        false,
    );
}

#[test]
fn tiny_matches_reference_bn_folded() {
    check_all(
        &tiny_config(),
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        &fixture("tiny_io.safetensors"),
        true,
    );
}

#[test]
fn full_matches_reference_unfolded() {
    let Some(dir) = shared("fixtures/parity") else {
        return;
    };
    check_all(
        &ModelConfig::official(),
        &dir.join("full_recon.safetensors"),
        &dir.join("full_seg.safetensors"),
        &dir.join("full_io.safetensors"),
        false,
    );
}

#[test]
fn full_matches_reference_bn_folded() {
    let Some(dir) = shared("fixtures/parity") else {
        return;
    };
    check_all(
        &ModelConfig::official(),
        &dir.join("full_recon.safetensors"),
        &dir.join("full_seg.safetensors"),
        &dir.join("full_io.safetensors"),
        true,
    );
}

/// The tiny fixture's model, unfolded, on the CPU in f32.
fn tiny_model() -> Srsnet {
    Srsnet::load(
        &weights(&fixture("tiny_recon.safetensors"), false),
        &weights(&fixture("tiny_seg.safetensors"), false),
        &tiny_config(),
    )
    .unwrap()
}

/// The fused per-frame kernel equals the reference's grouped-conv form on a batch of two
/// frames whose kernels differ (each frame has its own info feature).
#[test]
fn dpconv_matches_reference_grouped_form() {
    let io = fixture("tiny_io.safetensors");
    let model = tiny_model();
    let x = io_tensor(&io, "seg_x3_0_pre_dpconv");
    let y = io_tensor(&io, "recon_x3_0");
    let dp = model.seg().dpconv();
    let fused = dp.forward(&x, &y).unwrap();
    let literal = dp.forward_reference_form(&x, &y).unwrap();
    // Float rounding only: both sum the same products in different orders.
    assert_close("dpconv fused vs literal", &fused, &literal, 1e-5);
    // The two frames' pooled info vectors differ, so their kernels do.
    let p = dp.pooled_info(&y).unwrap();
    let d = max_abs_diff(&p.get(0).unwrap(), &p.get(1).unwrap());
    assert!(
        d > 1e-3,
        "the two frames should get different kernels (pooled info differs by {d})"
    );
}

/// The fused DPConv op (one launch for the batch on CUDA) through its CPU twin: equal to the
/// reference's grouped-conv form on two frames with different kernels, in f32 and with an
/// f16 feature map, and to the reference's `seg_dpconv_out` on the tiny fixture.
#[test]
fn fused_dpconv_op_matches_reference() {
    let io = fixture("tiny_io.safetensors");
    let model = tiny_model();
    let x = io_tensor(&io, "seg_x3_0_pre_dpconv");
    let y = io_tensor(&io, "recon_x3_0");
    let dp = model.seg().dpconv();
    let literal = dp.forward_reference_form(&x, &y).unwrap();
    let fused = dp.forward_fused(&x, &y).unwrap();
    assert_close("fused op vs literal", &fused, &literal, 1e-5);
    assert_close(
        "fused op vs reference seg_dpconv_out",
        &fused.narrow(0, 0, 1).unwrap(),
        &io_tensor(&io, "seg_dpconv_out").narrow(0, 0, 1).unwrap(),
        F32_TOL,
    );
    // An f16 feature map: the op reads f16, computes in f32 and writes f16.
    let x16 = x.to_dtype(candle_core::DType::F16).unwrap();
    let half = dp.forward_fused(&x16, &y).unwrap();
    assert_eq!(half.dtype(), candle_core::DType::F16);
    assert_close(
        "fused op f16 vs literal",
        &half.to_dtype(candle_core::DType::F32).unwrap(),
        &literal,
        2e-3,
    );
    // Inputs of the wrong shape are an error naming what was expected, not a crash.
    let err = dp
        .forward_fused(&x.narrow(1, 0, 1).unwrap(), &y)
        .unwrap_err()
        .to_string();
    assert!(err.contains("DPConv") && err.contains("expected"), "{err}");
}
