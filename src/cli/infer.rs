//! `srsnet infer`: masks and target lists for image files.

use super::{default_weights, parse_grow, parse_threshold, target_rule, Grow};
use crate::device::DeviceSpec;
use crate::image_io::{read_frame, write_file, write_mask_png};
use crate::infer::{Detection, Detector, TargetRule};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `srsnet infer`.
#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// Weights file (default: the shipped models/srsnet-lite.safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// CPU engine options.
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Pixels with target probability above this are target (default: the weights' recorded
    /// operating point, else 0.5).
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f32>,
    /// Grow each target from its pixels above the threshold over its connected pixels above
    /// this (hysteresis), or `none` (default: the weights' recorded grow threshold, if any).
    #[arg(long, value_parser = parse_grow)]
    pub grow: Option<Grow>,
    /// Output folder for `NAME_mask.png` and `NAME.json`.
    #[arg(long, default_value = "srsnet-out")]
    pub out: PathBuf,
    /// PNG, BMP, TIFF or JPEG files; 8 or 16 bit; gray, RGB, RGBA or palette.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Runs `srsnet infer`: every image is processed; one that cannot be read, run or written is
/// reported and skipped, and the command fails at the end if any was.
pub fn run(args: InferArgs) -> Result<()> {
    let outputs = output_names(&args.images, &args.out)?;
    let detector = Detector::load(
        &args.weights.clone().unwrap_or_else(default_weights),
        &args.device.open()?,
        args.engine.options(),
    )?;
    let rule = target_rule(args.threshold, args.grow, detector.rule)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output folder {}", args.out.display()))?;
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0;
    for (path, (mask_path, json_path)) in args.images.iter().zip(&outputs) {
        let record = (|| -> Result<serde_json::Value> {
            let frame = read_frame(path, detector.channels())?;
            let det = detector.detect(&frame, rule)?;
            write_mask_png(mask_path, det.width, det.height, &det.target_mask)?;
            let record = record(path, mask_path, &det, rule);
            write_file(json_path, serde_json::to_string_pretty(&record)?.as_bytes())?;
            Ok(record)
        })();
        match record {
            Ok(record) => match writeln!(stdout, "{record}").and_then(|_| stdout.flush()) {
                Ok(()) => {}
                // The reader of stdout went away (`| head`): the files are still written.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => bail!("writing to stdout: {e}"),
            },
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images failed (see above); the others were processed",
            args.images.len()
        );
    }
    Ok(())
}

/// Each image's mask and JSON paths in `out`. Two images that would write the same file, or
/// an output that would replace one of the inputs, are refused before anything runs.
fn output_names(images: &[PathBuf], out: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let inputs: Vec<PathBuf> = images.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut seen: HashMap<String, &Path> = HashMap::new();
    let mut names = Vec::with_capacity(images.len());
    for path in images {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_string();
        if let Some(first) = seen.insert(stem.clone(), path) {
            bail!(
                "{} and {} would both write {stem}_mask.png and {stem}.json in {}; rename one or run them separately",
                first.display(),
                path.display(),
                out.display()
            );
        }
        let pair = (out.join(format!("{stem}_mask.png")), out.join(format!("{stem}.json")));
        for p in [&pair.0, &pair.1] {
            if p.canonicalize().is_ok_and(|c| inputs.contains(&c)) {
                bail!(
                    "{} is one of the input images; refusing to overwrite it (choose another --out)",
                    p.display()
                );
            }
        }
        names.push(pair);
    }
    Ok(names)
}

fn record(image: &Path, mask: &Path, det: &Detection, rule: TargetRule) -> serde_json::Value {
    let mut record = json!({
        "image": image.display().to_string(),
        "mask": mask.display().to_string(),
        "width": det.width,
        "height": det.height,
        "targets": det.targets,
    });
    rule.record(&mut record);
    record
}
