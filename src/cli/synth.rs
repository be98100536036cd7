//! `srsnet synth`: a synthetic sequence in the sequence layout (`frames/` + `centroids.csv`),
//! which `srsnet run --source DIR` and `srsnet eval --sequence DIR` read back with its truth;
//! or flat fields for `srsnet calibrate`.

use super::parse_size;
use crate::stream::sources::synthetic::MIN_SYNTHETIC_SIDE;
use crate::synthetic::{write_sequence, BitDepth, SceneConfig, SynthRequest};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Arguments of `srsnet synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output folder (frames/ and centroids.csv are written inside).
    #[arg(long)]
    pub out: PathBuf,
    /// Frames to write.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Frame size WxH.
    #[arg(long, value_parser = parse_size, default_value = "320x256")]
    pub size: (usize, usize),
    /// Bit depth.
    #[arg(long, value_enum, default_value = "8")]
    pub bits: BitDepth,
    /// Targets per frame.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=super::run::MAX_SYNTHETIC_TARGETS as u64))]
    pub targets: u64,
    /// Scene seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write flat fields of this level in [0, 1] instead (for `srsnet calibrate`).
    #[arg(long, value_parser = parse_level)]
    pub flat: Option<f32>,
}

fn parse_level(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: a flat-field level is in [0, 1]")),
    }
}

/// Runs `srsnet synth`.
pub fn run(args: SynthArgs) -> Result<()> {
    let (width, height) = args.size;
    if width < MIN_SYNTHETIC_SIDE || height < MIN_SYNTHETIC_SIDE {
        bail!("synthetic frames must be at least {MIN_SYNTHETIC_SIDE}×{MIN_SYNTHETIC_SIDE}, got {width}×{height}");
    }
    let req = SynthRequest {
        count: args.count,
        scene: SceneConfig {
            width,
            height,
            targets: args.targets as usize,
            seed: args.seed,
            ..Default::default()
        },
        bits: args.bits,
        flat: args.flat,
    };
    write_sequence(&args.out, &req)?;
    eprintln!(
        "wrote {} frames to {}/frames and their truth to centroids.csv",
        args.count,
        args.out.display()
    );
    Ok(())
}
