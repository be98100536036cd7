//! `srsnet import`: reference checkpoints (SRS_R and SRS_S state dicts saved as safetensors)
//! → one project weights file, recording the reference's preprocessing, quirks included
//! (ImageNet normalisation, the extra /255, the 256×256 resize, RGB input).

use super::{refuse_overwrite, StoreDtype};
use crate::model::weights_file;
use crate::model::ModelConfig;
use crate::preprocess::PreprocessSpec;
use anyhow::{bail, Result};
use candle_core::DType;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `srsnet import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The reconstruction net's state dict (safetensors).
    #[arg(long)]
    pub recon: PathBuf,
    /// The segmentation net's state dict (safetensors).
    #[arg(long)]
    pub seg: PathBuf,
    /// Model preset (official, lite) or a config JSON file.
    #[arg(long, default_value = "official")]
    pub preset: String,
    /// The weights file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: StoreDtype,
}

/// Runs `srsnet import`.
pub fn run(args: ImportArgs) -> Result<()> {
    refuse_overwrite([args.recon.as_path(), args.seg.as_path()], &args.out)?;
    let config = ModelConfig::from_preset_or_path(&args.preset)?;
    if config.in_channels != 3 {
        bail!(
            "reference checkpoints take 3-channel input; preset `{}` has {} channels",
            args.preset,
            config.in_channels
        );
    }
    let tensors = weights_file::import_reference(&args.recon, &args.seg, &config)?;
    let preprocess = PreprocessSpec::reference();
    let info = json!({
        "source": "imported reference checkpoints",
        "recon": args.recon.display().to_string(),
        "seg": args.seg.display().to_string(),
        "note": "R runs in eval mode (running statistics); the reference leaves it in train mode at test time",
    });
    let dtype = DType::from(args.dtype);
    weights_file::write(&args.out, &tensors, &config, &preprocess, &info, dtype)?;
    eprintln!("wrote {} ({} tensors, {dtype:?})", args.out.display(), tensors.len());
    Ok(())
}
