//! The fused kernels the plan runs. Each takes planar views (see `buffers.rs`), writes plane
//! interiors only, and splits its work over the engine's thread pool.

pub mod attention;
pub mod conv;
pub mod resample;
pub mod staging;
pub mod winograd;

use super::buffers::Planes;

/// What a convolution kernel (direct or Winograd) does after the sum, in this order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Adds these planes (the output's geometry, one per output channel).
    pub residual: Option<Planes<'a>>,
    /// `max(0, ·)`.
    pub relu: bool,
    /// `1 / (1 + e^−·)`.
    pub sigmoid: bool,
}

/// The logistic function, as the Candle path computes it.
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}
