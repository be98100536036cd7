//! `srsnet infer`: masks and target lists for image files.

use crate::image_io::{read_frame, write_mask_png};
use crate::infer::{Detection, Detector};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct InferArgs {
    pub weights: PathBuf,
    pub device: Device,
    /// None: the weights' operating point.
    pub threshold: Option<f32>,
    pub out: PathBuf,
    pub images: Vec<PathBuf>,
}

/// Processes every image; one that cannot be read is reported and skipped, and the command
/// fails at the end if any was.
pub fn run(args: &InferArgs) -> Result<()> {
    if args.images.is_empty() {
        bail!("no images given");
    }
    let detector = Detector::from_file(&args.weights, &args.device)?;
    let threshold = args.threshold.unwrap_or(detector.threshold);
    if !(0.0..1.0).contains(&threshold) {
        bail!("--threshold must be in [0, 1), got {threshold}");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output folder {}", args.out.display()))?;
    let stdout = std::io::stdout();
    let mut failed = 0;
    for path in &args.images {
        match process(&detector, path, args, threshold) {
            Ok(record) => {
                let mut out = stdout.lock();
                writeln!(out, "{record}")?;
                out.flush()?;
            }
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

fn process(detector: &Detector, path: &Path, args: &InferArgs, threshold: f32) -> Result<serde_json::Value> {
    let frame = read_frame(path, detector.channels())?;
    let det = detector.detect(&frame, threshold)?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let mask_path = args.out.join(format!("{stem}_mask.png"));
    write_mask_png(&mask_path, det.width, det.height, &det.mask(threshold))?;
    let record = record(path, &mask_path, &det, threshold);
    let json_path = args.out.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(record)
}

fn record(image: &Path, mask: &Path, det: &Detection, threshold: f32) -> serde_json::Value {
    json!({
        "image": image.display().to_string(),
        "mask": mask.display().to_string(),
        "width": det.width,
        "height": det.height,
        "threshold": threshold,
        "targets": det.targets,
    })
}
