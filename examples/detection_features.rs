//! Every target of a net on a recipe's sets, with the verifier's features and a patch of the
//! frame around it: the data of models/README.md's "Can a second stage reject the false
//! targets?", for studying other second stages outside the program.
//!
//! cargo run --release --example detection_features -- WEIGHTS THRESHOLD RECIPE (train|val) OUT_PREFIX
//!
//! Writes OUT_PREFIX.csv (one row per target: set, frame, whether it matched a true target
//! by the field's 3-pixel centroid rule, and `verify::FEATURES`), OUT_PREFIX.sets.csv
//! (targets, hits and frames per set, so that a filter's Pd and false targets per frame follow
//! from the rows) and OUT_PREFIX.patches.f32 (per row, the 32×32 window of the frame around
//! the target, less the window's median, in the frame's robust std; little-endian f32). The
//! weights' own verifier, if any, is not applied.
use anyhow::{bail, Context, Result};
use srsnet::detect::Target;
use srsnet::eval::metrics::{matched_blobs, truth_points};
use srsnet::image_io::Frame;
use srsnet::infer::{Detector, EngineOptions, TargetRule};
use srsnet::robust;
use srsnet::train::recipe::{load_validation, Recipe};
use srsnet::verify::{frame_features, FrameStats, FEATURES};
use std::io::Write;
use std::path::Path;

const PATCH: isize = 32;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        bail!("usage: detection_features WEIGHTS THRESHOLD RECIPE (train|val) OUT_PREFIX");
    }
    let opts = EngineOptions {
        verify: false,
        ..Default::default()
    };
    let det = Detector::load(Path::new(&args[0]), &candle_core::Device::Cpu, opts)?;
    let rule = TargetRule::plain(args[1].parse().context("THRESHOLD")?);
    let mut recipe = Recipe::from_file(Path::new(&args[2]))?;
    if args[3] == "train" {
        recipe = recipe.training_as_validation()?;
    }
    let (sets, _) = load_validation(&recipe, det.channels())?;
    let out = &args[4];
    let mut rows = std::io::BufWriter::new(std::fs::File::create(format!("{out}.csv"))?);
    let mut patches = std::io::BufWriter::new(std::fs::File::create(format!("{out}.patches.f32"))?);
    let mut summary = std::fs::File::create(format!("{out}.sets.csv"))?;
    writeln!(rows, "set,frame,hit,{}", FEATURES.join(","))?;
    writeln!(summary, "set,targets,hits,frames")?;
    for set in &sets {
        let (mut targets, mut hits) = (0, 0);
        for item in &set.items {
            let (frame, w, h) = (&item.image, item.image.width, item.image.height);
            let d = det.detect(frame, rule)?;
            let truth = truth_points(&item.truth, w, h);
            let found: Vec<_> = d.targets.iter().map(Target::blob).collect();
            let matched = matched_blobs(&found, &truth);
            targets += truth.len();
            hits += matched.iter().filter(|&&m| m).count();
            let stats = FrameStats::of(frame, d.targets.len());
            let all = frame_features(&d.targets, frame, &d.prob);
            for ((t, &m), f) in d.targets.iter().zip(&matched).zip(&all) {
                let f: Vec<String> = f.iter().map(|v| format!("{v:.5}")).collect();
                writeln!(rows, "{},{},{},{}", set.name, item.name, m as u8, f.join(","))?;
                for v in patch(frame, t, &stats) {
                    patches.write_all(&v.to_le_bytes())?;
                }
            }
        }
        writeln!(summary, "{},{targets},{hits},{}", set.name, set.items.len())?;
        eprintln!("{}: {hits} of {targets} targets, {} frames", set.name, set.items.len());
    }
    Ok(())
}

/// The frame's 32×32 window centred on the target (clamped at the edges), less its median,
/// in units of the frame's robust std.
fn patch(frame: &Frame, t: &Target, stats: &FrameStats) -> Vec<f32> {
    let (cx, cy) = (t.x.round() as isize, t.y.round() as isize);
    let win: Vec<f32> = (-PATCH / 2..PATCH / 2)
        .flat_map(|dy| (-PATCH / 2..PATCH / 2).map(move |dx| (dx, dy)))
        .map(|(dx, dy)| frame.clamped(cx + dx, cy + dy))
        .collect();
    let m = robust::median(&mut win.clone());
    win.iter().map(|v| (v - m) / stats.sigma).collect()
}
