//! DPConv (`PKernel_D2`): a convolution whose kernel is generated per frame from the
//! reconstruction encoder's deepest feature.
//!
//! The reference generates the kernel with a 1×1 convolution of `z` groups over the pooled
//! info vector `p` (B, z): a (B, N·M·K², 1, 1) tensor (589,824 channels in the released
//! model) that it reshapes into per-sample kernels for one grouped convolution. Because each
//! group maps one scalar to `G = N·M·K²/z` outputs, every kernel element is affine in one
//! pooled scalar: `θ[j] = Wg[j]·p[j / G] + Bg[j]`. We build each frame's kernel from that
//! formula directly (a (z, G) broadcast) and run one ordinary convolution per frame; the
//! literal form is kept in [`DpConv::forward_reference_form`] to test the two against each other.

use super::attention::{ChannelAttention, SpatialAttention};
use super::layers::{global_avg, ConvSpec};
use super::weights::{Init, Weights, WeightsError};

/// The generator is a 1×1 conv with one input channel per group, so fan_in = 1 and PyTorch
/// initialises its weights and biases from U(−1, 1): kernel elements of order 1, which makes
/// DPConv's output dominate x3_0 at the start of training. We keep that (reference §10).
const GEN_INIT: Init = Init::Uniform(1.0);
use super::dpconv_op::{dpconv_fused, FusedDpConv};
use candle_core::{DType, Result, Tensor};

#[derive(Debug, Clone)]
/// Dynamic-parameter convolution: the per-frame kernel generated from R's deepest feature, applied to S's.
pub struct DpConv {
    pub(crate) ca: ChannelAttention,
    pub(crate) sa: SpatialAttention,
    /// `Conv.0`: the 1×1 conv z → z applied before pooling (we pool first; equal by linearity).
    pub(crate) info_weight: Tensor, // (z, z)
    pub(crate) info_bias: Tensor, // (z)
    /// `Conv.2`: the grouped generator, viewed as (z, G).
    pub(crate) gen_weight: Tensor,
    pub(crate) gen_bias: Tensor,
    pub(crate) channels: usize,
    pub(crate) kernel: usize,
    /// On CUDA, for inference: the generator as one f32 (2, N·M·K²) tensor (weights, then
    /// biases) for the fused op ([`super::dpconv_op`]); `None` elsewhere and in training.
    fused: Option<Tensor>,
}

impl DpConv {
    /// `channels`: N = M, the segmentation bottleneck width; `info`: z; `kernel`: K.
    pub fn load(w: &Weights, channels: usize, info: usize, kernel: usize) -> std::result::Result<Self, WeightsError> {
        let n = channels * channels * kernel * kernel;
        let g = n / info;
        let conv = w.pp("Conv");
        let spec = ConvSpec::same(info, info, 1);
        let info_w = conv.pp(0);
        let gen = conv.pp(2);
        let reshape = |t: Tensor, name: &str, dims: (usize, usize)| {
            t.reshape(dims)
                .map_err(|source: candle_core::Error| WeightsError::Candle {
                    file: w.origin(),
                    name: gen.full_name(name),
                    source: Box::new(source),
                })
        };
        let mut dp = Self {
            ca: ChannelAttention::load(&w.pp("ca"), info)?,
            sa: SpatialAttention::load(&w.pp("sa"))?,
            info_weight: reshape(
                info_w.get(&[spec.cout, spec.cin, 1, 1], "weight", Init::pytorch_conv(info))?,
                "weight",
                (info, info),
            )?,
            info_bias: info_w.get(&[info], "bias", Init::pytorch_conv(info))?,
            gen_weight: reshape(gen.get(&[n, 1, 1, 1], "weight", GEN_INIT)?, "weight", (info, g))?,
            gen_bias: reshape(gen.get(&[n], "bias", GEN_INIT)?, "bias", (info, g))?,
            channels,
            kernel,
            fused: None,
        };
        if w.device().is_cuda() && !w.is_trainable() {
            dp.fused = Some(dp.fused_generator().map_err(|source| WeightsError::Candle {
                file: w.origin(),
                name: gen.full_name("weight"),
                source: Box::new(source),
            })?);
        }
        Ok(dp)
    }

    /// The generator in the fused op's layout: (2, N·M·K²) in f32.
    pub fn fused_generator(&self) -> Result<Tensor> {
        let flat = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32);
        Tensor::stack(&[flat(&self.gen_weight)?, flat(&self.gen_bias)?], 0)
    }

    /// The fused op's sizes.
    fn op(&self) -> FusedDpConv {
        FusedDpConv {
            channels: self.channels,
            kernel: self.kernel,
            info: self.info_bias.dims()[0],
        }
    }

    /// `DPConv(X, Y)` through the fused op, on any device (on the CPU it runs the op's twin,
    /// which is how the op is tested without a GPU). The pooled vector is computed by the
    /// graph and passed in f32.
    pub fn forward_fused(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let p = self.pooled_info(y)?.to_dtype(DType::F32)?;
        let gen = match &self.fused {
            Some(g) => g.clone(),
            None => self.fused_generator()?.to_device(x.device())?,
        };
        dpconv_fused(x, &p, &gen, self.op())
    }

    /// The pooled info vector p (B, z): `A·GAP(Y ⊙ SA(Y ⊙ CA(Y))) + a`.
    /// Quirk kept from the reference: SA sees the CA-weighted Y but multiplies the original Y.
    pub fn pooled_info(&self, y: &Tensor) -> Result<Tensor> {
        let gated = y.broadcast_mul(&self.ca.forward(y)?)?;
        let y2 = y.broadcast_mul(&self.sa.forward(&gated)?)?;
        global_avg(&y2)?
            .matmul(&self.info_weight.t()?)?
            .broadcast_add(&self.info_bias)
    }

    /// Frame b's kernel (N, M, K, K): `Wg ⊙ p_b` (each pooled scalar over its group) `+ Bg`.
    fn kernel_for(&self, p_b: &Tensor) -> Result<Tensor> {
        let k = self.kernel;
        let theta = self.gen_weight.broadcast_mul(&p_b.unsqueeze(1)?)?.add(&self.gen_bias)?;
        theta.reshape((self.channels, self.channels, k, k))
    }

    /// `DPConv(X, Y)`: X (B, N, h, w) is the segmentation bottleneck, Y (B, z, h, w) the info
    /// feature. Returns the convolution output, before the caller's residual add.
    pub fn forward(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        // The fused op on CUDA at inference: one launch, and the kernel generator and the long
        // per-pixel sums (N·K² = 2304 products in the official model) in f32.
        if self.fused.is_some() {
            return self.forward_fused(x, y);
        }
        let p = self.pooled_info(y)?;
        let frames = (0..x.dim(0)?)
            .map(|b| {
                x.narrow(0, b, 1)?
                    .conv2d(&self.kernel_for(&p.get(b)?)?, self.kernel / 2, 1, 1, 1)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&frames, 0)
    }

    /// The reference's literal computation: a z-group 1×1 generator convolution producing
    /// (B, N·M·K², 1, 1), reshaped to (B·N, M, K, K) and applied as one conv with B groups.
    /// Slow and memory-hungry by design; it exists to test [`DpConv::forward`].
    pub fn forward_reference_form(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let k = self.kernel;
        let z = self.info_bias.dim(0)?;
        let p = self.pooled_info(y)?.reshape((b, z, 1, 1))?;
        let n = c * c * k * k;
        let gen_w = self.gen_weight.reshape((n, 1, 1, 1))?;
        let theta = p
            .conv2d(&gen_w, 0, 1, 1, z)?
            .broadcast_add(&self.gen_bias.reshape((1, n, 1, 1))?)?;
        let kernels = theta.reshape((b * c, c, k, k))?;
        let out = x.reshape((1, b * c, h, w))?.conv2d(&kernels, k / 2, 1, 1, b)?;
        out.reshape((b, c, h, w))
    }
}
