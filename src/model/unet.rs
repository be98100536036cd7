//! The nested U-Net both SRSNet networks share (DNANet-like, 4 levels, Res-CBAM blocks,
//! max-pool down-sampling, a BLAM/Spu top-down fusion path). R and S differ only in widths,
//! block counts, R's IPATR modules, and S's DPConv at the bottleneck (see `srsnet.rs`).

use super::block::Layer;
use super::config::NetConfig;
use super::fusion::{Blam, Ipatr, Spu};
use super::layers::{pool, upsample, Conv2d, ConvBn, ConvSpec};
use super::weights::{Weights, WeightsError};
use candle_core::{Module, Result, Tensor};

/// The four encoder features `x0_0 … x3_0` at full, 1/2, 1/4 and 1/8 resolution.
#[derive(Debug, Clone)]
pub struct EncoderFeatures {
    /// The four levels' features, shallow to deep.
    pub x: [Tensor; 4],
}

/// Stem (`conv1`: conv3×3 + BN + ReLU) and the four encoder layers `conv0_0 … conv3_0`.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub(crate) stem: ConvBn,
    pub(crate) levels: [Layer; 4],
}

impl Encoder {
    /// Loads an encoder taking `in_channels` channels.
    pub fn load(w: &Weights, cfg: &NetConfig, in_channels: usize) -> std::result::Result<Self, WeightsError> {
        let stem = w.pp("conv1");
        let nb = cfg.widths;
        let cins = [cfg.stem, nb[0], nb[1], nb[2]];
        let layer = |i: usize| Layer::load(&w.pp(format!("conv{i}_0")), cins[i], nb[i], cfg.blocks[i]);
        Ok(Self {
            stem: ConvBn::load(&stem.pp(0), &stem.pp(1), ConvSpec::same(in_channels, cfg.stem, 3))?,
            levels: [layer(0)?, layer(1)?, layer(2)?, layer(3)?],
        })
    }

    /// x (B, C, H, W) with H and W multiples of 8.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderFeatures> {
        let s = self.stem.forward_relu(x)?;
        let x0 = self.levels[0].forward(&s)?;
        let x1 = self.levels[1].forward(&pool(&x0)?)?;
        let x2 = self.levels[2].forward(&pool(&x1)?)?;
        let x3 = self.levels[3].forward(&pool(&x2)?)?;
        Ok(EncoderFeatures { x: [x0, x1, x2, x3] })
    }
}

/// The dense decoder nodes, the BLAM/Spu fusion path, `finalconv` and the 1×1 head.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub(crate) conv0_1: Layer,
    pub(crate) conv1_1: Layer,
    pub(crate) conv2_1: Layer,
    pub(crate) conv0_2: Layer,
    pub(crate) conv1_2: Layer,
    pub(crate) conv0_3: Layer,
    /// `fup{l}`: Spu from level l to level l−1 (chosen by level, so any widths work).
    pub(crate) fup: [Spu; 3],
    /// `bottomuplocal_fpn_{l}` for levels 0, 1, 2.
    pub(crate) blam: [Blam; 3],
    /// `IPATR{l}` for levels 0, 1, 2 (R only; S builds them but never calls them).
    ipatr: Option<[Ipatr; 3]>,
    /// `conv0_1_1x1` (level-1 width → level-0) and `conv0_2_1x1` (level 2 → level 0).
    pub(crate) side: [Conv2d; 2],
    pub(crate) finalconv: Layer,
    pub(crate) head: Conv2d,
}

impl Decoder {
    /// Loads a decoder.
    pub fn load(
        w: &Weights,
        cfg: &NetConfig,
        out_channels: usize,
        with_ipatr: bool,
    ) -> std::result::Result<Self, WeightsError> {
        let nb = cfg.widths;
        let b = cfg.blocks;
        let layer = |name: &str, cin: usize, level: usize| Layer::load(&w.pp(name), cin, nb[level], b[level]);
        let ipatr = if with_ipatr {
            Some([
                Ipatr::load(&w.pp("IPATR0"), nb[0])?,
                Ipatr::load(&w.pp("IPATR1"), nb[1])?,
                Ipatr::load(&w.pp("IPATR2"), nb[2])?,
            ])
        } else {
            None
        };
        Ok(Self {
            conv0_1: layer("conv0_1", nb[0] + nb[1], 0)?,
            conv1_1: layer("conv1_1", nb[1] + nb[2] + nb[0], 1)?,
            conv2_1: layer("conv2_1", nb[2] + nb[3] + nb[1], 2)?,
            conv0_2: layer("conv0_2", nb[0] + nb[1] + nb[0], 0)?,
            conv1_2: layer("conv1_2", nb[1] + nb[2] + nb[1] + nb[0], 1)?,
            conv0_3: layer("conv0_3", nb[0] + nb[1] + nb[0], 0)?,
            fup: [
                Spu::load(&w.pp("fup1"), nb[1], nb[0])?,
                Spu::load(&w.pp("fup2"), nb[2], nb[1])?,
                Spu::load(&w.pp("fup3"), nb[3], nb[2])?,
            ],
            blam: [
                Blam::load(&w.pp("bottomuplocal_fpn_1"), nb[0])?,
                Blam::load(&w.pp("bottomuplocal_fpn_2"), nb[1])?,
                Blam::load(&w.pp("bottomuplocal_fpn_3"), nb[2])?,
            ],
            ipatr,
            side: [
                Conv2d::load(&w.pp("conv0_1_1x1"), ConvSpec::same(nb[1], nb[0], 1))?,
                Conv2d::load(&w.pp("conv0_2_1x1"), ConvSpec::same(nb[2], nb[0], 1))?,
            ],
            finalconv: Layer::load(&w.pp("finalconv"), 3 * nb[0], nb[0], 1)?,
            head: Conv2d::load(&w.pp("mask_head_1x1"), ConvSpec::same(nb[0], out_channels, 1))?,
        })
    }

    fn contrast(&self, level: usize, x: &Tensor) -> Result<Tensor> {
        match &self.ipatr {
            Some(m) => m[level].forward(x),
            None => Ok(x.clone()),
        }
    }

    /// Decodes the encoder features (x3_0 possibly DPConv-modified) into the head's output.
    /// Concatenation orders follow the reference exactly; they fix the weight layouts.
    pub fn forward(&self, f: &EncoderFeatures) -> Result<Tensor> {
        let [x0_0, x1_0, x2_0, x3_0] = &f.x;
        let cat = |ts: &[&Tensor]| Tensor::cat(ts, 1);
        let x0_1 = self.conv0_1.forward(&cat(&[x0_0, &upsample(x1_0, 2)?])?)?;
        let x1_1 = self
            .conv1_1
            .forward(&cat(&[x1_0, &upsample(x2_0, 2)?, &pool(&x0_1)?])?)?;
        let x2_1 = self
            .conv2_1
            .forward(&cat(&[x2_0, &upsample(x3_0, 2)?, &pool(&x1_1)?])?)?;
        let x0_2 = self.conv0_2.forward(&cat(&[&x0_1, &upsample(&x1_1, 2)?, x0_0])?)?;
        let x1_2 = self
            .conv1_2
            .forward(&cat(&[&x1_1, &upsample(&x2_1, 2)?, x1_0, &pool(&x0_2)?])?)?;
        let x0_3 = self.conv0_3.forward(&cat(&[&x0_2, &upsample(&x1_2, 2)?, &x0_1])?)?;

        let f3 = self.blam[2].forward(&self.contrast(2, &x2_1)?, &self.fup[2].forward(x3_0)?)?;
        let f2 = self.blam[1].forward(&self.contrast(1, &x1_2)?, &self.fup[1].forward(&f3)?)?;
        let f1 = self.blam[0].forward(&self.contrast(0, &x0_3)?, &self.fup[0].forward(&f2)?)?;

        let side2 = upsample(&self.side[0].forward(&f2)?, 2)?;
        let side3 = upsample(&self.side[1].forward(&f3)?, 4)?;
        let fused = self.finalconv.forward(&cat(&[&f1, &side2, &side3])?)?;
        self.head.forward(&fused)
    }
}
