//! `srsnet export`: rewrites a weights file in another dtype, optionally records an operating
//! point, and optionally also writes reference-named state dicts.

use super::{parse_grow, parse_threshold, refuse_overwrite, target_rule, Grow, StoreDtype};
use crate::model::weights_file::{self, WeightsFile};
use anyhow::{Context, Result};
use candle_core::DType;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `srsnet export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The weights file to read.
    #[arg(long)]
    pub weights: PathBuf,
    /// The weights file to write (never the input).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: StoreDtype,
    /// Also write recon.safetensors and seg.safetensors with the reference's names here.
    #[arg(long)]
    pub reference_dir: Option<PathBuf>,
    /// Record this probability threshold as the weights' operating point; the commands that
    /// run the model use it when no `--threshold` is given.
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f32>,
    /// Record this grow threshold (hysteresis; `none` removes one) with the operating point;
    /// the commands that run the model use it when no `--grow` is given.
    #[arg(long, value_parser = parse_grow)]
    pub grow: Option<Grow>,
}

/// Runs `srsnet export`.
pub fn run(args: ExportArgs) -> Result<()> {
    refuse_overwrite([args.weights.as_path()], &args.out)?;
    let file = WeightsFile::open(&args.weights)?;
    let tensors = file.tensors(DType::F32)?;
    let mut info = file.info.clone();
    if args.threshold.is_some() || args.grow.is_some() {
        let rule = target_rule(args.threshold, args.grow, file.operating_point())?;
        if !info.is_object() {
            info = json!({});
        }
        rule.record(&mut info);
    }
    let dtype = DType::from(args.dtype);
    weights_file::write(&args.out, &tensors, &file.config, &file.preprocess, &info, dtype)?;
    eprintln!("wrote {} ({} tensors, {dtype:?})", args.out.display(), tensors.len());
    if let Some(dir) = &args.reference_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (recon, seg) = weights_file::split_reference(&tensors);
        for (name, t) in [("recon.safetensors", recon), ("seg.safetensors", seg)] {
            let target = dir.join(name);
            refuse_overwrite([args.weights.as_path()], &target)?;
            let p = weights_file::write_plain(&target, &t, dtype)?;
            eprintln!("wrote {} (reference state-dict names)", p.display());
        }
    }
    Ok(())
}
