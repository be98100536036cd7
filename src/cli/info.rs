//! `srsnet info`: a weights file's config, preprocessing, provenance and parameter count.

use crate::model::weights_file::WeightsFile;
use crate::train::stages::is_running_statistic;
use anyhow::Result;
use candle_core::DType;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `srsnet info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The weights file.
    pub weights: PathBuf,
}

/// Runs `srsnet info`.
pub fn run(args: InfoArgs) -> Result<()> {
    let file = WeightsFile::open(&args.weights)?;
    let params: usize = file
        .tensors(DType::F32)?
        .iter()
        .filter(|(n, _)| !is_running_statistic(n))
        .map(|(_, t)| t.elem_count())
        .sum();
    let out = json!({
        "file": args.weights.display().to_string(),
        "config": file.config,
        "preprocess": file.preprocess,
        "info": file.info,
        "parameters": params,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
