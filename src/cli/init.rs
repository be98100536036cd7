//! `srsnet init`: a freshly initialised (untrained) weights file, for benchmarks and as
//! training's start.

use super::StoreDtype;
use crate::model::weights_file;
use crate::model::ModelConfig;
use crate::preprocess::PreprocessSpec;
use crate::temporal::MotionInput;
use anyhow::Result;
use candle_core::DType;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `srsnet init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Model preset (official, lite) or a config JSON file.
    #[arg(long, default_value = "lite")]
    pub preset: String,
    /// The weights file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 41)]
    pub seed: u64,
    /// Storage dtype.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: StoreDtype,
}

/// Runs `srsnet init`.
pub fn run(args: InitArgs) -> Result<()> {
    write_initialised(&args.preset, &args.out, args.seed, args.dtype.into())
}

/// Writes an untrained (PyTorch-default initialised) weights file for `preset`.
pub fn write_initialised(preset: &str, out: &Path, seed: u64, dtype: DType) -> Result<()> {
    let config = ModelConfig::from_preset_or_path(preset)?;
    let tensors = weights_file::initialised(&config, seed)?;
    let preprocess = if config.in_channels == 3 {
        PreprocessSpec::reference()
    } else {
        PreprocessSpec {
            motion: config.motion_channel.then_some(MotionInput::DEFAULT),
            ..PreprocessSpec::gray_default()
        }
    };
    let info = json!({ "source": "initialised (PyTorch default init), untrained", "seed": seed });
    weights_file::write(out, &tensors, &config, &preprocess, &info, dtype)?;
    eprintln!("wrote {} ({} tensors, untrained)", out.display(), tensors.len());
    Ok(())
}
