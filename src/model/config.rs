//! Model configuration as data: the sizes of both networks, read from `models/*.json`
//! presets or from a weights file's metadata.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Sizes of one nested U-Net (the reconstruction net R or the segmentation net S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Output channels of the 3×3 stem convolution.
    pub stem: usize,
    /// Channel width of each of the four levels (full, 1/2, 1/4, 1/8 resolution).
    pub widths: [usize; 4],
    /// Res-CBAM blocks per layer at each level (every node of a level uses its level's count).
    pub blocks: [usize; 4],
}

/// Everything needed to build SRSNet: both nets, the input channels and the DPConv kernel size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Preset or user-given name, recorded in weights files.
    pub name: String,
    /// Image channels the stems take: 1 (gray) or 3 (the reference's replicated RGB).
    pub in_channels: usize,
    /// Whether S's stem also takes the frame's motion plane (`crate::temporal`), after the
    /// image channels. R sees the image only: the kernel it generates for DPConv stays a
    /// function of the frame's appearance, and a single-frame R can serve a motion model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub motion_channel: bool,
    /// Channels of the reconstruction head (the reference reconstructs its 3-channel input).
    pub recon_out_channels: usize,
    /// DPConv kernel size K; its info channels are the reconstruction net's deepest width.
    pub dpconv_kernel: usize,
    /// The reconstruction net R.
    pub recon: NetConfig,
    /// The segmentation net S.
    pub seg: NetConfig,
}

impl ModelConfig {
    /// The released configuration of the reference code.
    pub fn official() -> Self {
        Self::from_json_str(include_str!("../../models/official.json")).expect("shipped preset")
    }

    /// The small 1-channel preset meant for the edge (about 1.9 GMACs per 256×256 frame).
    pub fn lite() -> Self {
        Self::from_json_str(include_str!("../../models/lite.json")).expect("shipped preset")
    }

    /// A preset by name (`official`, `lite`) or a path to a JSON config file.
    pub fn from_preset_or_path(name: &str) -> Result<Self> {
        match name {
            "official" => Ok(Self::official()),
            "lite" => Ok(Self::lite()),
            path => {
                let text = std::fs::read_to_string(Path::new(path))
                    .with_context(|| format!("reading model config {path} (presets are `official` and `lite`)"))?;
                Self::from_json_str(&text).with_context(|| format!("in model config {path}"))
            }
        }
    }

    /// Parses a config from JSON text, checking it.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).context("parsing model config JSON")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Input planes of S's stem: the image channels and the motion plane if any.
    pub fn seg_in_channels(&self) -> usize {
        self.in_channels + usize::from(self.motion_channel)
    }

    /// Whether `self` is `base` with a motion plane added to S's input and nothing else
    /// changed but the name: S's stem then starts with zero weights on the new plane, so that fine-tuning
    /// starts from `base`'s function (`srsnet train seg --init`).
    pub fn adds_motion(&self, base: &ModelConfig) -> bool {
        let widened = ModelConfig {
            name: self.name.clone(),
            motion_channel: true,
            ..base.clone()
        };
        !base.motion_channel && *self == widened
    }

    /// DPConv's info channels z: the reconstruction encoder's deepest width.
    pub fn dpconv_info_channels(&self) -> usize {
        self.recon.widths[3]
    }

    /// Number of generated kernel elements N·M·K² (N = M = the segmentation bottleneck width).
    pub fn dpconv_kernel_elements(&self) -> usize {
        let c = self.seg.widths[3];
        c * c * self.dpconv_kernel * self.dpconv_kernel
    }

    /// Rejects configurations the reference could not build either.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels != 1 && self.in_channels != 3 {
            bail!("in_channels must be 1 or 3, found {}", self.in_channels);
        }
        if self.motion_channel && self.in_channels != 1 {
            bail!(
                "motion_channel: the motion plane is a difference of gray frames; in_channels must be 1, found {}",
                self.in_channels
            );
        }
        if self.recon_out_channels == 0 {
            bail!("recon_out_channels must be at least 1");
        }
        if self.dpconv_kernel.is_multiple_of(2) {
            bail!("dpconv_kernel must be odd (same padding), found {}", self.dpconv_kernel);
        }
        for (net, c) in [("recon", &self.recon), ("seg", &self.seg)] {
            // Channel attention uses a hidden width of C/8, which must not be zero.
            if c.stem == 0 || c.widths.iter().any(|&w| w < 8) {
                bail!(
                    "{net}: every width must be at least 8 (channel attention uses C/8), found {:?}",
                    c.widths
                );
            }
            // Spu's pixel shuffle divides a level's width by 4.
            if c.widths[1..].iter().any(|&w| w % 4 != 0) {
                bail!(
                    "{net}: widths of levels 1-3 must be multiples of 4 (pixel shuffle ×2), found {:?}",
                    c.widths
                );
            }
            if c.blocks.contains(&0) {
                bail!("{net}: every level needs at least one block, found {:?}", c.blocks);
            }
        }
        let z = self.dpconv_info_channels();
        if !self.dpconv_kernel_elements().is_multiple_of(z) {
            bail!(
                "DPConv: info channels z = {z} (recon widths[3]) must divide N·M·K² = {} (the generator is a {z}-group 1×1 conv)",
                self.dpconv_kernel_elements()
            );
        }
        Ok(())
    }

    /// Whether `self` is `base` with more Res-CBAM blocks in some of S's levels and nothing
    /// else changed (R, the widths, the stem, DPConv): S's added blocks can then start as
    /// identities, so that fine-tuning starts from `base`'s function with more capacity
    /// (`srsnet train seg --init`; the trainer's `SegStart::Deepen`).
    pub fn deepens(&self, base: &ModelConfig) -> bool {
        let same = |a: &NetConfig, b: &NetConfig| a.stem == b.stem && a.widths == b.widths;
        self.in_channels == base.in_channels
            && self.motion_channel == base.motion_channel
            && self.recon_out_channels == base.recon_out_channels
            && self.dpconv_kernel == base.dpconv_kernel
            && self.recon == base.recon
            && same(&self.seg, &base.seg)
            && self.seg.blocks.iter().zip(&base.seg.blocks).all(|(a, b)| a >= b)
            && self.seg.blocks != base.seg.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_load_and_validate() {
        let o = ModelConfig::official();
        assert_eq!(o.seg.widths, [16, 64, 128, 256]);
        assert_eq!(o.seg.blocks, [3, 4, 6, 3]);
        assert_eq!(o.recon.widths, [8, 16, 32, 64]);
        assert_eq!(o.in_channels, 3);
        let l = ModelConfig::lite();
        assert_eq!(l.in_channels, 1);
        assert_eq!(l.dpconv_info_channels(), 16);
    }

    #[test]
    fn only_more_segmentation_blocks_deepen_a_model() {
        let lite = ModelConfig::lite();
        let mut deeper = lite.clone();
        deeper.seg.blocks = [1, 2, 2, 2];
        assert!(deeper.deepens(&lite));
        assert!(!lite.deepens(&deeper), "fewer blocks");
        assert!(!lite.deepens(&lite), "the same model is a plain fine-tune");
        let mut wider = deeper.clone();
        wider.seg.widths[1] = 24;
        assert!(!wider.deepens(&lite), "other widths");
        let mut other_r = deeper.clone();
        other_r.recon.blocks = [1, 2, 1, 1];
        assert!(!other_r.deepens(&lite), "R is frozen: it must not change");
    }

    #[test]
    fn the_deeper_presets_in_models_deepen_each_other_in_turn() {
        let load = |json: &str| ModelConfig::from_json_str(json).unwrap();
        let deep = load(include_str!("../../models/lite-deep.json"));
        let deeper = load(include_str!("../../models/lite-deeper.json"));
        assert_eq!(deeper.seg.blocks, [1, 3, 3, 3]);
        assert!(deep.deepens(&ModelConfig::lite()));
        assert!(deeper.deepens(&deep), "lite-deeper fine-tunes from lite-deep weights");
        assert!(deeper.deepens(&ModelConfig::lite()));
    }

    #[test]
    fn the_motion_preset_is_lite_deep_with_a_motion_plane() {
        let load = |json: &str| ModelConfig::from_json_str(json).unwrap();
        let deep = load(include_str!("../../models/lite-deep.json"));
        let motion = load(include_str!("../../models/lite-deep-motion.json"));
        assert!(motion.adds_motion(&deep));
    }

    #[test]
    fn rejects_dpconv_group_that_does_not_divide() {
        let mut c = ModelConfig::lite();
        c.recon.widths[3] = 28; // 64·64·9 = 36864 is not divisible by 28
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("must divide"), "{err}");
    }

    #[test]
    fn a_motion_plane_is_added_to_an_otherwise_equal_model_only() {
        let lite = ModelConfig::lite();
        let motion = ModelConfig {
            motion_channel: true,
            name: "lite-motion".into(),
            ..lite.clone()
        };
        assert_eq!(motion.seg_in_channels(), 2);
        assert!(motion.adds_motion(&lite));
        assert!(!lite.adds_motion(&motion) && !motion.adds_motion(&motion));
        let mut deeper = motion.clone();
        deeper.seg.blocks = [1, 2, 2, 2];
        assert!(!deeper.adds_motion(&lite), "one change at a time");
        // Files written before the field existed read as single-frame models.
        assert!(
            !ModelConfig::from_json_str(include_str!("../../models/lite.json"))
                .unwrap()
                .motion_channel
        );
    }

    #[test]
    fn rejects_bad_channels() {
        let mut c = ModelConfig::lite();
        c.in_channels = 2;
        assert!(c.validate().is_err());
    }
}
