//! The attention gates of the reference: CBAM channel and spatial attention, and its ECA-like layer.

use super::layers::{global_avg, global_max, linear_no_bias, mean_f32, Conv2d, ConvSpec};
use super::weights::{Init, Weights, WeightsError};
use candle_core::{Result, Tensor, D};
use candle_nn::ops::sigmoid;

/// CBAM channel attention: `sigmoid(fc2(relu(fc1(GAP x))) + fc2(relu(fc1(GMP x))))`, shape (B, C, 1, 1).
/// The hidden width is C/8: the reference ignores its `ratio=16` argument and hard-wires //8.
#[derive(Debug, Clone)]
pub struct ChannelAttention {
    pub(crate) fc1: Tensor,
    pub(crate) fc2: Tensor,
}

impl ChannelAttention {
    /// Loads CBAM channel attention for `c` channels from `w`.
    pub fn load(w: &Weights, c: usize) -> std::result::Result<Self, WeightsError> {
        let h = c / 8;
        Ok(Self {
            fc1: w.pp("fc1").get(&[h, c, 1, 1], "weight", Init::pytorch_conv(c))?,
            fc2: w.pp("fc2").get(&[c, h, 1, 1], "weight", Init::pytorch_conv(h))?,
        })
    }

    /// Scales each channel of `x` by its attention weight.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mlp = |v: Tensor| -> Result<Tensor> { linear_no_bias(&linear_no_bias(&v, &self.fc1)?.relu()?, &self.fc2) };
        let a = mlp(global_avg(x)?)?.add(&mlp(global_max(x)?)?)?;
        let (b, c) = a.dims2()?;
        sigmoid(&a)?.reshape((b, c, 1, 1))
    }
}

/// CBAM spatial attention: `sigmoid(conv7x7([mean_c x, max_c x]))`, shape (B, 1, H, W).
#[derive(Debug, Clone)]
pub struct SpatialAttention {
    pub(crate) conv: Conv2d,
}

impl SpatialAttention {
    /// Loads CBAM spatial attention (the 7×7 conv) from `w`.
    pub fn load(w: &Weights) -> std::result::Result<Self, WeightsError> {
        Ok(Self {
            conv: Conv2d::load(&w.pp("conv1"), ConvSpec::same(2, 1, 7).no_bias())?,
        })
    }

    /// Each pixel's attention weight for `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The channel mean in f32 for f16 maps (see `layers::mean_f32`).
        let s = Tensor::cat(&[mean_f32(x, D::Minus(3), true)?, x.max_keepdim(1)?], 1)?;
        self.gate(&s)
    }

    /// The weights from the pooled map `[mean_c x, max_c x]` (B, 2, H, W).
    pub fn gate(&self, pooled: &Tensor) -> Result<Tensor> {
        sigmoid(&self.conv.forward(pooled)?)
    }
}

/// The reference's `ECA_Layer`: `x · sigmoid(conv1d_k3(GMP(sigmoid x)))`.
/// Its pool is named "avg" in the reference but is a max pool; we do what the code does.
/// (The reference notes write a second sigmoid before the conv; the code and the parity
/// fixtures have one.) `GMP(sigmoid x) = sigmoid(GMP x)` because sigmoid is monotone, so we
/// pool first: C sigmoids instead of C·H·W.
#[derive(Debug, Clone)]
pub struct Eca {
    pub(crate) conv: Tensor, // (1, 1, 3)
}

impl Eca {
    /// Loads ECA (the 1-D conv across channels) from `w`.
    pub fn load(w: &Weights) -> std::result::Result<Self, WeightsError> {
        Ok(Self {
            conv: w.pp("conv").get(&[1, 1, 3], "weight", Init::pytorch_conv(3))?,
        })
    }

    /// Scales each channel of `x` by its ECA weight.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let g = sigmoid(&global_max(x)?)?.reshape((b, 1, c))?;
        let w = sigmoid(&g.conv1d(&self.conv, 1, 1, 1, 1)?)?.reshape((b, c, 1, 1))?;
        x.broadcast_mul(&w)
    }
}
