//! How far apart two tensors are, as the parity checks (tests, `import` reports) measure it.

use candle_core::{DType, Result, Tensor};

/// max |t| over all elements, in f32.
pub fn max_abs(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

/// max |a − b| over all elements, in f32; tensors of different shapes are an error.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!("cannot compare tensors of shapes {:?} and {:?}", a.dims(), b.dims());
    }
    max_abs(&(a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?)
}
