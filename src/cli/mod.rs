//! The `srsnet` subcommands: each file holds one command's arguments (a clap `Args`) and its
//! `run`; the binary only parses and dispatches. The value parsers here check every option
//! with a valid range when it is parsed, so a bad value is refused before any work starts.

pub mod bench;
pub mod calibrate;
pub mod eval;
pub mod export;
pub mod import;
pub mod infer;
pub mod info;
pub mod init;
pub mod label;
pub mod run;
pub mod synth;
pub mod train;

use crate::detect::TargetRule;
use crate::limits::{check_frame_size, MAX_BATCH};
use anyhow::{bail, Result};
use candle_core::DType;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// The `srsnet` command line.
#[derive(Parser)]
#[command(
    name = "srsnet",
    version,
    about = "SRSNet infrared small-target segmentation runtime",
    help_template = "{about-with-newline}\n{usage-heading} {usage}{after-help}\nOptions:\n{options}",
    after_help = GROUPED_COMMANDS
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// The streaming pipeline: camera, folder, raw recording or synthetic frames → targets.
    Run(run::RunArgs),
    /// Segment image files: a mask PNG and a JSON target list per image.
    Infer(infer::InferArgs),
    /// Time one forward pass (R encoder + S), or training steps with --train.
    Bench(bench::BenchArgs),
    /// Score a model (or mask files, or a centroid-annotated sequence) with IoU, nIoU, F1, Pd, Fa.
    Eval(eval::EvalArgs),
    /// Write a synthetic sequence (frames/ + centroids.csv), or flat fields for calibration.
    Synth(synth::SynthArgs),
    /// Build a calibration profile (two-point NUC + bad pixels) from cold and hot flat fields.
    Calibrate(calibrate::CalibrateArgs),
    /// Derive masks from a sequence's point or box annotations, with overlays to inspect them.
    Label(label::LabelArgs),
    /// Train SRSNet: `recon` (stage 1), `seg` (stage 2, R frozen) or `all` (both, then export).
    Train {
        /// The stage(s) to train.
        #[command(subcommand)]
        stage: train::TrainStage,
    },
    /// Print a weights file's config, preprocessing and provenance.
    Info(info::InfoArgs),
    /// Convert reference checkpoints (SRS_R and SRS_S state dicts as safetensors) to one weights file.
    Import(import::ImportArgs),
    /// Rewrite a weights file in f16 or f32, optionally also as reference-named state dicts.
    Export(export::ExportArgs),
    /// Write an untrained (PyTorch-default initialised) weights file for a preset.
    Init(init::InitArgs),
}

/// `srsnet --help`'s command list, grouped by what a user is doing.
pub const GROUPED_COMMANDS: &str = "\
Run a model:
  run        The streaming pipeline: camera, folder, raw recording or synthetic frames → targets
  infer      Segment image files: a mask PNG and a JSON target list per image
  bench      Time the forward pass or a training step

Evaluate and prepare data:
  eval       Score a model, mask files or a centroid-annotated sequence (IoU, nIoU, F1, Pd, Fa)
  synth      Write a synthetic sequence (frames/ + centroids.csv) or flat fields
  calibrate  Build a calibration profile (two-point NUC + bad pixels) from flat fields
  label      Derive masks from point or box annotations, with overlays to inspect them

Train:
  train      Train SRSNet: recon (stage 1), seg (stage 2) or all

Weights files:
  info       Print a weights file's config, preprocessing and provenance
  import     Convert reference checkpoints to one weights file
  export     Rewrite a weights file (f16/f32, operating point, reference names)
  init       Write an untrained weights file for a preset
";

/// The shipped default weights: `models/srsnet-lite.safetensors` in the working directory,
/// else beside the sources this binary was built from.
pub fn default_weights() -> PathBuf {
    let rel = Path::new("models/srsnet-lite.safetensors");
    if rel.exists() {
        return rel.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Parses `WxH` (e.g. 640x512) within the frame limits.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}`: expected WxH, e.g. 640x512"))?;
    let num = |v: &str| {
        v.parse::<usize>()
            .map_err(|_| format!("`{s}`: `{v}` is not a whole number"))
    };
    let (w, h) = (num(w)?, num(h)?);
    check_frame_size("size", w, h).map_err(|e| format!("{e}"))?;
    Ok((w, h))
}

/// Parses a probability threshold: a number in [0, 1).
pub fn parse_threshold(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if (0.0..1.0).contains(&t) => Ok(t),
        _ => Err(format!("`{s}`: a threshold is a probability in [0, 1)")),
    }
}

/// `--grow G|none`: the grow threshold of a hysteresis rule ([`TargetRule`]), or none for the
/// plain threshold (to turn off one the weights record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grow(pub Option<f32>);

/// Parses `--grow`: a probability in [0, 1), or `none`.
pub fn parse_grow(s: &str) -> Result<Grow, String> {
    if s == "none" {
        return Ok(Grow(None));
    }
    parse_threshold(s)
        .map(|g| Grow(Some(g)))
        .map_err(|_| format!("`{s}`: a grow threshold is a probability in [0, 1), or none"))
}

/// The target rule a command runs with: the user's `--threshold` and `--grow` where given,
/// else the weights' recorded operating point (each part on its own, so `--threshold` alone
/// keeps a recorded grow threshold).
pub fn target_rule(threshold: Option<f32>, grow: Option<Grow>, recorded: TargetRule) -> Result<TargetRule> {
    let t = threshold.unwrap_or(recorded.threshold);
    let g = grow.map_or(recorded.grow, |g| g.0);
    TargetRule::new(t, g).map_err(|e| match grow {
        Some(_) => anyhow::anyhow!("--grow: {e}"),
        None => anyhow::anyhow!(
            "--threshold {t}: {e}; the grow threshold is the weights' own, so give a lower --grow or --grow none"
        ),
    })
}

/// Parses a finite, strictly positive number (rates, such as `--fps`).
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}`: expected a positive number")),
    }
}

/// Parses a finite, non-negative number (radii, distances).
pub fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}`: expected a non-negative number")),
    }
}

/// Parses a share: a number from 0 to 1.
pub fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: expected a share from 0 to 1")),
    }
}

/// Parses a batch size: 1 to [`MAX_BATCH`].
pub fn parse_batch(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(b) if (1..=MAX_BATCH).contains(&b) => Ok(b),
        _ => Err(format!("`{s}`: a batch is 1 to {MAX_BATCH} frames")),
    }
}

/// Parses a count that must be at least 1 (iterations, epochs).
pub fn parse_at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}`: expected a whole number of at least 1")),
    }
}

/// How the network runs on the CPU: shared by `run`, `infer`, `eval` and `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// CPU implementation: `plan` (fused kernels) or `candle` (the graph training uses, for comparison).
    #[arg(long, value_enum, default_value = "plan")]
    pub engine: crate::engine::Engine,
    /// Kernel threads (default: the physical cores). The stream's capture, pre- and
    /// post-processing threads are separate from these.
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Do not apply the second stage the weights carry (`srsnet train verifier`): report every
    /// target of the threshold rule.
    #[arg(long)]
    pub no_verifier: bool,
}

impl EngineArgs {
    /// The library's options. For `--engine candle`, `--threads` sizes rayon's global pool.
    pub fn options(&self) -> crate::infer::EngineOptions {
        let threads = self.threads.unwrap_or_else(crate::engine::default_threads);
        if self.engine == crate::engine::Engine::Candle && self.threads.is_some() {
            // Fails only if the global pool already exists, in which case it keeps its size.
            let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
        }
        crate::infer::EngineOptions {
            engine: self.engine,
            threads,
            verify: !self.no_verifier,
        }
    }
}

/// The motion gate's settings (`run` and `eval`): see `stream::motion`.
#[derive(Debug, Clone, clap::Args)]
pub struct MotionGateArgs {
    /// The motion gate: compare each frame with the one this many frames back, aligned by the
    /// scene's shift, and reject detections whose contrast was already there (fixed ground
    /// points carried by a pan); see models/README.md, "A motion gate for sequences".
    #[arg(long, requires = "motion_min",
          value_parser = clap::value_parser!(u64).range(1..=crate::limits::MAX_MOTION_GATE as u64))]
    pub motion_gate: Option<u64>,
    /// With --motion-gate: the share of a detection's contrast that must be new to keep it.
    /// No default: no setting kept the slow aircraft of DAUB 1–4 (models/README.md).
    #[arg(long, requires = "motion_gate", value_parser = parse_share)]
    pub motion_min: Option<f64>,
    /// With --motion-gate: the largest scene shift per frame followed, px (0: a fixed camera).
    #[arg(long, default_value_t = 8, requires = "motion_gate",
          value_parser = clap::value_parser!(u64).range(0..=crate::limits::MAX_STATIC_REGISTER as u64))]
    pub motion_register: u64,
}

impl MotionGateArgs {
    /// The gate, when asked for.
    pub fn gate(&self) -> Result<Option<crate::stream::motion::MotionGate>> {
        self.motion_gate
            .zip(self.motion_min)
            .map(|(k, r)| crate::stream::motion::MotionGate::new(k as usize, r as f32, self.motion_register as usize))
            .transpose()
    }
}

/// Most kernel threads `--threads` takes.
pub const MAX_THREADS: usize = 256;

/// Parses `--threads`: 1 to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: expected a thread count from 1 to {MAX_THREADS}")),
    }
}

/// Storage dtype of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreDtype {
    /// Half precision (what we ship).
    F16,
    /// Single precision.
    F32,
}

impl From<StoreDtype> for DType {
    fn from(d: StoreDtype) -> Self {
        match d {
            StoreDtype::F16 => DType::F16,
            StoreDtype::F32 => DType::F32,
        }
    }
}

/// Refuses to write `output` when it is one of `inputs` (the same file by another name
/// included): a command never overwrites what the user gave it.
pub fn refuse_overwrite<'a>(inputs: impl IntoIterator<Item = &'a Path>, output: &Path) -> Result<()> {
    let Ok(out) = output.canonicalize() else {
        return Ok(()); // does not exist yet
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == out) {
            bail!(
                "{} is an input of this command; refusing to overwrite it (choose another output)",
                output.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grouped_help_lists_every_command_once() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let names: Vec<&str> = cmd
            .get_subcommands()
            .map(|c| c.get_name())
            .filter(|&n| n != "help")
            .collect();
        for n in &names {
            let listed = GROUPED_COMMANDS
                .lines()
                .filter(|l| l.trim_start().starts_with(&format!("{n} ")))
                .count();
            assert_eq!(listed, 1, "`{n}` is listed {listed} times in GROUPED_COMMANDS");
        }
        let entries = GROUPED_COMMANDS.lines().filter(|l| l.starts_with("  ")).count();
        assert_eq!(
            entries,
            names.len(),
            "GROUPED_COMMANDS lists a command that does not exist"
        );
        cmd.debug_assert();
    }

    #[test]
    fn value_parsers_refuse_out_of_range_values() {
        assert_eq!(parse_size("640x512"), Ok((640, 512)));
        assert!(parse_size("100000x100000").unwrap_err().contains("16384"));
        assert!(parse_size("2147549185x4294836226").is_err());
        assert!(parse_size("0x5").is_err());
        for bad in ["-1", "1", "nan", "inf", "x"] {
            assert!(parse_threshold(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_threshold("0.9"), Ok(0.9));
        for bad in ["0", "-5", "nan", "inf"] {
            assert!(parse_positive(bad).is_err(), "{bad}");
        }
        assert!(parse_non_negative("-1").is_err() && parse_non_negative("0").is_ok());
        assert!(parse_batch("0").is_err() && parse_batch("8").is_ok() && parse_batch("100000").is_err());
        assert!(parse_at_least_one("0").is_err());
    }
}
