//! The top-down fusion path of both nets: Spu (pixel-shuffle up-sampling), BLAM (the
//! reference's "improved BLAM" fusion) and IPATR (the local-contrast module, R only).

use super::attention::Eca;
use super::layers::{Conv2d, ConvBn, ConvSpec};
use super::weights::{Weights, WeightsError};
use candle_core::{Module, Result, Tensor};
use candle_nn::ops::{pixel_shuffle, sigmoid};

/// `relu(BN(conv3x3(pixel_shuffle(x, 2))))`: (B, cin, H, W) → (B, cout, 2H, 2W).
#[derive(Debug, Clone)]
pub struct Spu {
    pub(crate) conv: ConvBn,
}

impl Spu {
    /// Loads an SPU (sub-pixel upsampling) from `cin` to `cout` channels.
    pub fn load(w: &Weights, cin: usize, cout: usize) -> std::result::Result<Self, WeightsError> {
        let c = w.pp("conv");
        Ok(Self {
            conv: ConvBn::load(&c.pp(0), &c.pp(1), ConvSpec::same(cin / 4, cout, 3))?,
        })
    }
}

impl Module for Spu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward_relu(&pixel_shuffle(x, 2)?)
    }
}

/// `relu(BN(conv1x1([ECA(high), relu(BN4(conv2(relu(BN3(conv1 low)))))])))`.
/// The reference also builds `bn1` and `bn2` here and never uses them; we do not load them.
/// Unlike the TIP figure, the code has no sigmoid on the bottom-up branch, and neither do we.
#[derive(Debug, Clone)]
pub struct Blam {
    pub(crate) bottom_up1: ConvBn,
    pub(crate) bottom_up2: ConvBn,
    pub(crate) eca: Eca,
    pub(crate) fuse: ConvBn,
}

impl Blam {
    /// Loads a BLAM fusion block for `c` channels.
    pub fn load(w: &Weights, c: usize) -> std::result::Result<Self, WeightsError> {
        let f = w.pp("finalconv");
        Ok(Self {
            bottom_up1: ConvBn::load(&w.pp("conv1"), &w.pp("bn3"), ConvSpec::same(c, c, 1))?,
            bottom_up2: ConvBn::load(&w.pp("conv2"), &w.pp("bn4"), ConvSpec::same(c, c, 1))?,
            eca: Eca::load(&w.pp("ECALayer"))?,
            fuse: ConvBn::load(&f.pp(0), &f.pp(1), ConvSpec::same(2 * c, c, 1))?,
        })
    }

    /// `low`: the same-level decoder feature; `high`: the Spu-upsampled deeper feature.
    pub fn forward(&self, low: &Tensor, high: &Tensor) -> Result<Tensor> {
        let a = self.bottom_up1.forward_relu(low)?;
        let a = self.bottom_up2.forward_relu(&a)?;
        let b = self.eca.forward(high)?;
        self.fuse.forward_relu(&Tensor::cat(&[b, a], 1)?)
    }
}

/// IPATR: three contrast branches (1×1, 3×3, 3×3 dilation 2), each reusing one convolution
/// for its "mean" and its "sigma": `m_k = (x − μ_k + 0.001) / (sigmoid(conv_k(x − μ_k)) + 0.001)`,
/// `out = x + sigmoid(mean_k m_k)·x`. The unused `tr` and `tr_1` convolutions are not loaded.
#[derive(Debug, Clone)]
pub struct Ipatr {
    branches: [Conv2d; 3],
}

impl Ipatr {
    /// Loads an IPATR block for `c` channels.
    pub fn load(w: &Weights, c: usize) -> std::result::Result<Self, WeightsError> {
        Ok(Self {
            branches: [
                Conv2d::load(&w.pp("conv1"), ConvSpec::same(c, c, 1))?,
                Conv2d::load(&w.pp("conv2"), ConvSpec::same(c, c, 3))?,
                Conv2d::load(&w.pp("conv3"), ConvSpec::same(c, c, 3).dilated(2))?,
            ],
        })
    }
}

impl Module for Ipatr {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for conv in &self.branches {
            let centred = x.sub(&conv.forward(x)?)?;
            let sigma = sigmoid(&conv.forward(&centred)?)?;
            let m = centred.affine(1.0, 0.001)?.div(&sigma.affine(1.0, 0.001)?)?;
            sum = Some(match sum {
                Some(s) => s.add(&m)?,
                None => m,
            });
        }
        let m = sigmoid(&(sum.expect("three branches") / 3.0)?)?;
        x.add(&m.mul(x)?)
    }
}
