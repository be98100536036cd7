//! Raw access to CPU f32 tensors, for the custom ops (`batchnorm_train.rs`, `conv.rs`,
//! `cbam_op.rs`, `resample_op.rs`) whose loops read Candle's storage directly instead of going
//! through tensor ops, and the helpers they share: the reduction loop and output allocation.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Whether a tensor is on the CPU in f32, the only case the custom ops handle.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The f32 data of a contiguous CPU storage; `what` names the argument in the error.
pub fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// As [`f32_slice`], for a storage that must be on the CPU.
pub fn cpu_f32_slice<'a>(s: &'a Storage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match s {
        Storage::Cpu(cpu) => f32_slice(cpu, l, what),
        _ => candle_core::bail!("{what} must be on the CPU"),
    }
}

/// Runs `f` on a tensor's f32 data, made contiguous, when it is on the CPU (as in a custom
/// op's backward, which gets tensors rather than storages); `what` names it in the error.
pub fn with_cpu_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    f(cpu_f32_slice(&storage, layout, what)?)
}

/// `Σ a·b` over two equal-length rows or planes: eight f32 lanes (which the compiler vectorises; a single f32
/// accumulator would be serial), summed in f64 at the end.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| (x * y) as f64)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    (lanes.iter().map(|&v| v as f64).sum::<f64>() + tail) as f32
}

/// A zero vector of `len` floats, zeroed by all of rayon's threads. Every op allocates its
/// outputs and gradients with it: `vec![0.0; n]` is a calloc, which glibc serves from reused
/// heap blocks (training keeps freed memory, `crate::heap`) by a memset on the calling thread,
/// so each full-size buffer was zeroed serially before the parallel loop that fills it.
pub fn par_zeroed(len: usize) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(1 << 16)
        .for_each(|c| c.fill(MaybeUninit::new(0.0)));
    // SAFETY: every element was written by the fill above.
    unsafe { out.set_len(len) };
    out
}
