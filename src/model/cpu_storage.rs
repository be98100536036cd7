//! Raw access to CPU f32 tensors, for the custom ops (`batchnorm_train.rs`, `conv.rs`) whose
//! loops read Candle's storage directly instead of going through tensor ops.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};

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
