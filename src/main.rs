//! `srsnet`: the command-line front end. Parsing and wiring only; behaviour lives in the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use srsnet::cli;
use srsnet::device::parse_device;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "srsnet",
    version,
    about = "SRSNet infrared small-target segmentation runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment image files: a mask PNG and a JSON target list per image.
    Infer {
        /// Weights file (default: the shipped models/srsnet-lite.safetensors).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Pixels with target probability above this are target.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// Output folder for `NAME_mask.png` and `NAME.json`.
        #[arg(long, default_value = "srsnet-out")]
        out: PathBuf,
        /// PNG, BMP, TIFF or JPEG files; 8 or 16 bit; gray, RGB, RGBA or palette.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Convert reference checkpoints (SRS_R and SRS_S state dicts as safetensors) to one weights file.
    Import {
        #[arg(long)]
        recon: PathBuf,
        #[arg(long)]
        seg: PathBuf,
        /// Model preset (official, lite) or a config JSON file.
        #[arg(long, default_value = "official")]
        preset: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "f16")]
        dtype: String,
    },
    /// Rewrite a weights file in f16 or f32, optionally also as reference-named state dicts.
    Export {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "f16")]
        dtype: String,
        /// Also write recon.safetensors and seg.safetensors with the reference's names here.
        #[arg(long)]
        reference_dir: Option<PathBuf>,
    },
    /// Write an untrained (PyTorch-default initialised) weights file for a preset.
    Init {
        #[arg(long, default_value = "lite")]
        preset: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 41)]
        seed: u64,
        #[arg(long, default_value = "f16")]
        dtype: String,
    },
    /// Print a weights file's config, preprocessing and provenance.
    Info { weights: PathBuf },
    /// Time one forward pass (R encoder + S) on a square frame.
    Bench {
        /// Weights file; without it, an untrained model of --preset is timed.
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value = "lite")]
        preset: String,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 20)]
        iters: usize,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Infer {
            weights,
            device,
            threshold,
            out,
            images,
        } => cli::infer::run(&cli::infer::InferArgs {
            weights: weights.unwrap_or_else(cli::default_weights),
            device: parse_device(&device)?,
            threshold,
            out,
            images,
        }),
        Command::Import {
            recon,
            seg,
            preset,
            out,
            dtype,
        } => cli::weights::import(&recon, &seg, &preset, &out, cli::weights::parse_dtype(&dtype)?),
        Command::Export {
            weights,
            out,
            dtype,
            reference_dir,
        } => cli::weights::export(
            &weights,
            &out,
            cli::weights::parse_dtype(&dtype)?,
            reference_dir.as_deref(),
        ),
        Command::Init {
            preset,
            out,
            seed,
            dtype,
        } => cli::weights::init(&preset, &out, seed, cli::weights::parse_dtype(&dtype)?),
        Command::Info { weights } => cli::weights::info(&weights),
        Command::Bench {
            weights,
            preset,
            device,
            size,
            warmup,
            iters,
        } => {
            let device = parse_device(&device)?;
            let tmp;
            let path = match weights {
                Some(p) => p,
                None => {
                    tmp =
                        std::env::temp_dir().join(format!("srsnet-bench-{preset}-{}.safetensors", std::process::id()));
                    cli::weights::init(&preset, &tmp, 41, candle_core::DType::F16)?;
                    tmp.clone()
                }
            };
            let r = cli::bench::forward_latency(&path, &device, size, warmup, iters);
            if path.starts_with(std::env::temp_dir()) {
                let _ = std::fs::remove_file(&path);
            }
            let r = r?;
            println!(
                "{} {}x{} on {:?}: mean {:.1} ms, p50 {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs",
                r.preset, r.size, r.size, device, r.mean_ms, r.p50_ms, r.min_ms, r.max_ms, r.iters
            );
            Ok(())
        }
    }
}
