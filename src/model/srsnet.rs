//! SRSNet: the reconstruction net R, the segmentation net S, and the inference pair
//! (R's encoder feeding S's DPConv). Reference: fidshu/SRSNet @ 3ec478a, `SRS_R`, `SRS_RTS`,
//! `SRS_S`; see `../shared/docs/srsnet-reference.md`.

use super::config::ModelConfig;
use super::dpconv::DpConv;
use super::unet::{Decoder, Encoder, EncoderFeatures};
use super::weights::{Weights, WeightsError};
use candle_core::{bail, Result, Tensor};

/// The reconstruction net R. Stage 1 trains its full forward to reproduce its input; stage 2
/// and inference run only its encoder, whose deepest feature `x3_0` drives DPConv.
#[derive(Debug, Clone)]
pub struct ReconNet {
    /// R's encoder, whose deepest feature generates DPConv's kernels.
    pub encoder: Encoder,
    pub(crate) decoder: Decoder,
}

impl ReconNet {
    /// Loads R from `w`.
    pub fn load(w: &Weights, cfg: &ModelConfig) -> std::result::Result<Self, WeightsError> {
        Ok(Self {
            encoder: Encoder::load(w, &cfg.recon, cfg.in_channels)?,
            decoder: Decoder::load(w, &cfg.recon, cfg.recon_out_channels, true)?,
        })
    }

    /// The full forward (stage-1 output): the linear reconstruction of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.encoder.forward(x)?)
    }
}

/// Intermediate tensors of one segmentation forward, for parity tests and debugging.
#[derive(Debug, Clone)]
pub struct SegTrace {
    /// S's deepest feature before DPConv.
    pub x3_0_pre_dpconv: Tensor,
    /// DPConv's output before the residual add.
    pub dpconv_out: Tensor,
    /// The mask logits.
    pub logits: Tensor,
}

/// The segmentation net S with its DPConv at the bottleneck.
#[derive(Debug, Clone)]
pub struct SegNet {
    pub(crate) encoder: Encoder,
    pub(crate) dpconv: DpConv,
    pub(crate) decoder: Decoder,
}

impl SegNet {
    /// Loads S from `w`.
    pub fn load(w: &Weights, cfg: &ModelConfig) -> std::result::Result<Self, WeightsError> {
        Ok(Self {
            encoder: Encoder::load(w, &cfg.seg, cfg.seg_in_channels())?,
            dpconv: DpConv::load(
                &w.pp("PKernel_D2"),
                cfg.seg.widths[3],
                cfg.dpconv_info_channels(),
                cfg.dpconv_kernel,
            )?,
            decoder: Decoder::load(w, &cfg.seg, 1, false)?,
        })
    }

    /// The DPConv layer.
    pub fn dpconv(&self) -> &DpConv {
        &self.dpconv
    }

    /// Logits (B, 1, H, W) for input x and info feature y = R.x3_0 (same batch).
    pub fn forward(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(self.trace(x, y)?.logits)
    }

    /// Runs S on `x` with R's deepest feature `y`, keeping the intermediates the parity fixtures check.
    pub fn trace(&self, x: &Tensor, y: &Tensor) -> Result<SegTrace> {
        if x.dim(0)? != y.dim(0)? {
            bail!(
                "DPConv needs one info feature per frame: {} frames, {} info features",
                x.dim(0)?,
                y.dim(0)?
            );
        }
        let mut f: EncoderFeatures = self.encoder.forward(x)?;
        let pre = f.x[3].clone();
        let dpconv_out = self.dpconv.forward(&pre, y)?;
        // x3_0 ← x3_0 + DPConv(x3_0, Y): residual, with no BN or activation after it.
        f.x[3] = (&pre + &dpconv_out)?;
        let logits = self.decoder.forward(&f)?;
        Ok(SegTrace {
            x3_0_pre_dpconv: pre,
            dpconv_out,
            logits,
        })
    }
}

/// What inference runs: R's encoder (for DPConv's info feature), then S.
///
/// Deviation from the reference, on purpose: the reference leaves R in train mode at test
/// time, so its BatchNorms normalise with each test image's own statistics; we run R with its
/// running statistics (eval mode), as the parity fixtures were made.
#[derive(Debug, Clone)]
pub struct Srsnet {
    /// The model's sizes.
    pub config: ModelConfig,
    pub(crate) recon_encoder: Encoder,
    pub(crate) seg: SegNet,
}

impl Srsnet {
    /// `recon` and `seg` are views at the roots of the two state dicts.
    pub fn load(recon: &Weights, seg: &Weights, config: &ModelConfig) -> std::result::Result<Self, WeightsError> {
        Ok(Self {
            config: config.clone(),
            recon_encoder: Encoder::load(recon, &config.recon, config.in_channels)?,
            seg: SegNet::load(seg, config)?,
        })
    }

    /// x (B, planes, H, W), H and W multiples of 8 → logits (B, 1, H, W); the planes are the
    /// image channels, then the motion plane for a motion model.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.trace(x)?.1.logits)
    }

    /// The info feature R.x3_0 and S's trace.
    pub fn trace(&self, x: &Tensor) -> Result<(Tensor, SegTrace)> {
        let (_, c, h, w) = x.dims4()?;
        if c != self.config.seg_in_channels() {
            bail!(
                "model `{}` takes {} input planes, got {c}",
                self.config.name,
                self.config.seg_in_channels()
            );
        }
        if h % 8 != 0 || w % 8 != 0 || h == 0 || w == 0 {
            bail!("input height and width must be non-zero multiples of 8 (three 2×2 poolings), got {h}×{w}");
        }
        // R sees the image planes only (see `ModelConfig::motion_channel`).
        let image = x.narrow(1, 0, self.config.in_channels)?;
        let y = self.recon_encoder.forward(&image)?.x[3].clone();
        let trace = self.seg.trace(x, &y)?;
        Ok((y, trace))
    }

    /// The segmentation net.
    pub fn seg(&self) -> &SegNet {
        &self.seg
    }
}
