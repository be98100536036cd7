//! `srsnet import`, `export`, `init` and `info`: moving weights between formats.

use crate::model::weights_file::{self, WeightsFile};
use crate::model::ModelConfig;
use crate::preprocess::PreprocessSpec;
use anyhow::{bail, Context, Result};
use candle_core::DType;
use serde_json::json;
use std::path::Path;

pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f16" => Ok(DType::F16),
        "f32" => Ok(DType::F32),
        other => bail!("unknown dtype `{other}`: expected f16 or f32"),
    }
}

/// Reference checkpoints (converted to safetensors) → one project file, recording the
/// reference's preprocessing, quirks included (ImageNet normalisation, the extra /255, the
/// 256×256 resize, RGB input).
pub fn import(recon: &Path, seg: &Path, preset: &str, out: &Path, dtype: DType) -> Result<()> {
    let config = ModelConfig::from_preset_or_path(preset)?;
    let tensors = weights_file::import_reference(recon, seg, &config)?;
    let mut preprocess = PreprocessSpec::reference();
    if config.in_channels != 3 {
        bail!(
            "reference checkpoints take 3-channel input; preset `{preset}` has {} channels",
            config.in_channels
        );
    }
    preprocess.channels = config.in_channels;
    let info = json!({
        "source": "imported reference checkpoints",
        "recon": recon.display().to_string(),
        "seg": seg.display().to_string(),
        "note": "R runs in eval mode (running statistics); the reference leaves it in train mode at test time",
    });
    weights_file::write(out, &tensors, &config, &preprocess, &info, dtype)?;
    eprintln!("wrote {} ({} tensors, {:?})", out.display(), tensors.len(), dtype);
    Ok(())
}

/// Rewrites a project file in another dtype, and optionally as reference-named state dicts.
/// `threshold` records an operating point (probability threshold) in the file's info; the
/// commands that run the model use it when no `--threshold` is given.
pub fn export(
    weights: &Path,
    out: &Path,
    dtype: DType,
    reference_dir: Option<&Path>,
    threshold: Option<f32>,
) -> Result<()> {
    let file = WeightsFile::open(weights)?;
    let tensors = file.tensors(DType::F32)?;
    let mut info = file.info.clone();
    if let Some(t) = threshold {
        if !(0.0..1.0).contains(&t) {
            bail!("--threshold must be in [0, 1), got {t}");
        }
        if !info.is_object() {
            info = json!({});
        }
        info["threshold"] = json!(t);
    }
    weights_file::write(out, &tensors, &file.config, &file.preprocess, &info, dtype)?;
    eprintln!("wrote {} ({} tensors, {:?})", out.display(), tensors.len(), dtype);
    if let Some(dir) = reference_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (recon, seg) = weights_file::split_reference(&tensors);
        for (name, t) in [("recon.safetensors", recon), ("seg.safetensors", seg)] {
            let p = weights_file::write_plain(&dir.join(name), &t, dtype)?;
            eprintln!("wrote {} (reference state-dict names)", p.display());
        }
    }
    Ok(())
}

/// A freshly initialised (untrained) weights file, for benchmarks and as training's start.
pub fn init(preset: &str, out: &Path, seed: u64, dtype: DType) -> Result<()> {
    let config = ModelConfig::from_preset_or_path(preset)?;
    let tensors = weights_file::initialised(&config, seed)?;
    let preprocess = if config.in_channels == 3 {
        PreprocessSpec::reference()
    } else {
        PreprocessSpec::gray_default()
    };
    let info = json!({ "source": "initialised (PyTorch default init), untrained", "seed": seed });
    weights_file::write(out, &tensors, &config, &preprocess, &info, dtype)?;
    eprintln!("wrote {} ({} tensors, untrained)", out.display(), tensors.len());
    Ok(())
}

/// Prints a weights file's metadata and parameter count.
pub fn info(weights: &Path) -> Result<()> {
    let file = WeightsFile::open(weights)?;
    let params: usize = file
        .tensors(DType::F32)?
        .iter()
        .filter(|(n, _)| !n.contains("running_"))
        .map(|(_, t)| t.elem_count())
        .sum();
    let out = json!({
        "file": weights.display().to_string(),
        "config": file.config,
        "preprocess": file.preprocess,
        "info": file.info,
        "parameters": params,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
