//! `srsnet`: the command-line front end. It parses and dispatches; every command's arguments
//! and behaviour live in the library (`srsnet::cli::<command>`).

use clap::Parser;
use srsnet::cli::{self, Cli, Command};

fn main() {
    let result = match Cli::parse().command {
        Command::Run(a) => cli::run::run(a).map(|_| ()),
        Command::Infer(a) => cli::infer::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a).map(|_| ()),
        Command::Label(a) => cli::label::run(a),
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
