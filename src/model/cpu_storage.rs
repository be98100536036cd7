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

/// Elements summed in f32 before each partial sum is added in f64.
const LANE_BLOCK: usize = 256;

/// `Σ_k terms(k)` over `0..n` for `N` terms at once, in f64: each block of [`LANE_BLOCK`]
/// elements is summed in eight f32 lanes (which the compiler vectorises, as in [`dot`]) and then
/// added in f64, so a plane of 65,536 values keeps about f32 precision per block. The training
/// BatchNorm's statistics and gradient sums: the f64 scalar loops this replaced there were a
/// tenth of a lite seg training step.
pub fn lane_sums_by<const N: usize>(n: usize, terms: impl Fn(usize) -> [f32; N]) -> [f64; N] {
    let mut total = [0f64; N];
    for start in (0..n).step_by(LANE_BLOCK) {
        let end = (start + LANE_BLOCK).min(n);
        let mut lanes = [[0f32; 8]; N];
        let mut k = start;
        while k + 8 <= end {
            for l in 0..8 {
                let t = terms(k + l);
                for (acc, v) in lanes.iter_mut().zip(t) {
                    acc[l] += v;
                }
            }
            k += 8;
        }
        for (j, acc) in lanes.iter().enumerate() {
            let tail: f32 = (k..end).map(|k| terms(k)[j]).sum();
            total[j] += (acc.iter().sum::<f32>() + tail) as f64;
        }
    }
    total
}

/// [`lane_sums_by`] over the values of one slice.
pub fn lane_sums<const N: usize>(x: &[f32], terms: impl Fn(f32) -> [f32; N]) -> [f64; N] {
    lane_sums_by(x.len(), |k| terms(x[k]))
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

/// A vector of `len` floats built in parallel, chunk by chunk: chunk `i` (of `chunk` values,
/// the last one possibly shorter) is the first values of `values(i)`. For outputs that a
/// loop computes in full, where zeroing them first ([`par_zeroed`]) was a memset of every
/// output the training BatchNorm wrote (8 % of a lite seg step went to memset).
///
/// Panics if `values(i)` is shorter than its chunk (before anything unwritten is exposed).
pub fn par_collect_chunks<I>(len: usize, chunk: usize, values: impl Fn(usize) -> I + Sync) -> Vec<f32>
where
    I: ExactSizeIterator<Item = f32>,
{
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let v = values(i);
            assert!(
                v.len() >= dst.len(),
                "chunk {i}: {} values for {} elements",
                v.len(),
                dst.len()
            );
            dst.iter_mut().zip(v).for_each(|(o, v)| {
                o.write(v);
            });
        });
    // SAFETY: each chunk was written in full above (its iterator was at least as long, and a
    // shorter one panics before this point).
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_chunks_hold_each_chunks_values_and_a_short_last_chunk() {
        // 10 values in chunks of 4: the last chunk takes the first 2 of its iterator.
        let v = par_collect_chunks(10, 4, |i| (0..4).map(move |j| (i * 10 + j) as f32));
        assert_eq!(v, [0., 1., 2., 3., 10., 11., 12., 13., 20., 21.]);
    }

    #[test]
    #[should_panic(expected = "chunk 1: 3 values for 4 elements")]
    fn a_chunk_with_too_few_values_panics() {
        par_collect_chunks(8, 4, |i| (0..if i == 1 { 3 } else { 4 }).map(|j| j as f32));
    }
}
