//! The CPU inference engine: a plan of fused, allocation-free kernels for R's encoder and S.
//!
//! # Layout
//! Activations are planar (NCHW, one batch item), each channel plane stored with a zero
//! border, and kernels vectorise along the image row. We read both peers before choosing:
//! ONNX Runtime's MLAS blocks channels by the vector width (NCHWc: 8 or 16 channels
//! interleaved per pixel) and runs a direct convolution over those blocks; XNNPACK keeps
//! NHWC and runs an indirect convolution (a pointer table to the input pixels feeding a
//! GEMM micro-kernel over channels). Both vectorise over channels, which pays off at 32+
//! channels. SRSNet's costly layers are the opposite shape: the lite model has 8 channels at
//! full resolution, and even the official one has 16 there. Channel-vectorised layouts
//! would leave half or more of an AVX-512 register empty at those layers (or pad 8 channels
//! to 16), whereas rows are hundreds of pixels long at every level but the last. So we
//! vectorise over pixels, as MLAS's direct NCHW path for small channel counts does, and block
//! over 4 output channels for register reuse (see `kernels/conv.rs`). The zero border makes
//! every "same" convolution branch-free; a channel concatenation is a list of buffers read
//! in place; pooling, up-sampling and pixel shuffle write straight into the next layer's
//! input planes.
//!
//! Where channels are many (≥ 16 in, ≥ 32 out: the official model below full resolution),
//! 3×3 layers run as Winograd F(2×2, 3×3) instead (`kernels/winograd.rs`): tiles transformed
//! from the same planes into per-thread scratch, where the channel sums are small matrix
//! products over contiguous operands, vectorised over tiles.
//!
//! # Fusion
//! BatchNorm is folded into the convolutions at build time; bias, ReLU, sigmoid and residual
//! adds run in the convolution's output pass; CBAM's channel gate is applied on the fly by
//! the spatial pooling and the block's output pass; ECA's gate is folded into the BLAM
//! fusion convolution's weights per frame; DPConv's kernel is generated per frame straight
//! into the packed weight layout the convolution reads.
//!
//! Candle remains the framework for training, CUDA and the reference path (`--engine candle`).

pub mod buffers;
pub mod kernels;
pub mod plan;
pub mod runner;
pub mod simd;
pub mod threads;

pub use plan::{check_size, Plan, PLAN_MEMORY_LIMIT};
pub use runner::{CpuEngine, Engine};
pub use simd::Isa;
pub use threads::{default_threads, ThreadPool};
