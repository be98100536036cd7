//! `srsnet`: the command-line front end. It parses and dispatches; every command's arguments
//! and behaviour live in the library (`srsnet::cli::<command>`).

use clap::{Parser, Subcommand};
use srsnet::cli;

#[derive(Parser)]
#[command(
    name = "srsnet",
    version,
    about = "SRSNet infrared small-target segmentation runtime",
    help_template = "{about-with-newline}\n{usage-heading} {usage}\n\n{after-help}\nOptions:\n{options}",
    after_help = cli::GROUPED_COMMANDS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The streaming pipeline: camera, folder, raw recording or synthetic frames → targets.
    Run(cli::run::RunArgs),
    /// Segment image files: a mask PNG and a JSON target list per image.
    Infer(cli::infer::InferArgs),
    /// Time one forward pass (R encoder + S), or training steps with --train.
    Bench(cli::bench::BenchArgs),
    /// Score a model (or mask files, or a centroid-annotated sequence) with IoU, nIoU, F1, Pd, Fa.
    Eval(cli::eval::EvalArgs),
    /// Write a synthetic sequence (frames/ + centroids.csv), or flat fields for calibration.
    Synth(cli::synth::SynthArgs),
    /// Build a calibration profile (two-point NUC + bad pixels) from cold and hot flat fields.
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Train SRSNet: `recon` (stage 1), `seg` (stage 2, R frozen) or `all` (both, then export).
    Train {
        #[command(subcommand)]
        stage: cli::train::TrainStage,
    },
    /// Print a weights file's config, preprocessing and provenance.
    Info(cli::info::InfoArgs),
    /// Convert reference checkpoints (SRS_R and SRS_S state dicts as safetensors) to one weights file.
    Import(cli::import::ImportArgs),
    /// Rewrite a weights file in f16 or f32, optionally also as reference-named state dicts.
    Export(cli::export::ExportArgs),
    /// Write an untrained (PyTorch-default initialised) weights file for a preset.
    Init(cli::init::InitArgs),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Run(a) => cli::run::run(a).map(|_| ()),
        Command::Infer(a) => cli::infer::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a).map(|_| ()),
        Command::Train { stage } => cli::train::run(stage),
        Command::Info(a) => cli::info::run(a),
        Command::Import(a) => cli::import::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Init(a) => cli::init::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
