//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use srsnet::model::{ModelConfig, NetConfig, WeightStore, Weights};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The project root: where this test binary was built, or `SRSNET_TEST_ROOT` when the binary
/// runs elsewhere (scripts/gpu-check.sh carries test binaries to a GPU machine).
fn root() -> PathBuf {
    std::env::var_os("SRSNET_TEST_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// `../shared` beside the project (or `SRSNET_SHARED`), or None (the caller prints why it skips).
pub fn shared(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("SRSNET_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    let p = base.join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found (../shared is absent)", p.display());
        None
    }
}

pub fn store(path: &Path) -> Arc<WeightStore> {
    WeightStore::open(path).unwrap_or_else(|e| panic!("{e}"))
}

pub fn weights(path: &Path, fold: bool) -> Weights {
    Weights::new(store(path), DType::F32, &Device::Cpu).with_bn_folding(fold)
}

pub fn io_tensor(io: &Path, name: &str) -> Tensor {
    store(io).get_any_shape(name, DType::F32, &Device::Cpu).unwrap()
}

/// max |a − b| over all elements.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    srsnet::compare::max_abs_diff(a, b).unwrap()
}

pub fn max_abs(a: &Tensor) -> f32 {
    srsnet::compare::max_abs(a).unwrap()
}

/// The parity bound of issue 2: max|ours − ref| ≤ tol · max(1, max|ref|).
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, tol: f32) -> f32 {
    let err = max_abs_diff(ours, reference);
    let bound = tol * max_abs(reference).max(1.0);
    eprintln!(
        "{name}: max abs err {err:.3e} (bound {bound:.3e}, max|ref| {:.3e})",
        max_abs(reference)
    );
    assert!(err <= bound, "{name}: max abs err {err} > bound {bound}");
    err
}

/// Fraction of elements where the signs of the two logit tensors agree.
pub fn sign_agreement(a: &Tensor, b: &Tensor) -> f64 {
    let a = a
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = b
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let same = a.iter().zip(&b).filter(|(x, y)| (**x > 0.0) == (**y > 0.0)).count();
    same as f64 / a.len() as f64
}

/// The configuration of the tiny parity and training fixtures (see ../shared/README.md).
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        name: "tiny-fixture".into(),
        in_channels: 3,
        motion_channel: false,
        recon_out_channels: 3,
        dpconv_kernel: 3,
        recon: NetConfig {
            stem: 8,
            widths: [8, 12, 16, 24],
            blocks: [1, 1, 2, 1],
        },
        seg: NetConfig {
            stem: 8,
            widths: [8, 24, 32, 40],
            blocks: [2, 1, 2, 1],
        },
    }
}
