//! The fused kernels the plan runs. Each takes planar views (see `buffers.rs`), writes plane
//! interiors only, and splits its work over the engine's thread pool.

pub mod attention;
pub mod conv;
pub mod resample;
pub mod winograd;

/// The logistic function, as the Candle path computes it.
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}
