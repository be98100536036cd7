//! `srsnet label`: derives masks from a sequence's point or box annotations (the rule of
//! [`crate::dataset::labels`]) and writes them with overlays, so a person can inspect what
//! training will learn from.

use super::{parse_non_negative, refuse_overwrite};
use crate::dataset::labels::{derive_frame, Annotation, LabelRule};
use crate::dataset::sequence::Sequence;
use crate::image_io::{read_frame, write_mask_png, write_rgb_png};
use crate::overlay;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Arguments of `srsnet label`.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// A sequence folder: frames/ with centroids.csv (points) or boxes.csv (frame,x0,y0,x1,y1).
    #[arg(long)]
    pub source: PathBuf,
    /// Output folder: masks/NAME.png and overlays/NAME.png are written inside.
    #[arg(long)]
    pub out: PathBuf,
    /// Half-side of the window around a point, in pixels.
    #[arg(long, default_value_t = LabelRule::default().window as u64, value_parser = clap::value_parser!(u64).range(3..=64))]
    pub window: u64,
    /// Threshold floor in background σ.
    #[arg(long, default_value_t = 3.0, value_parser = parse_non_negative)]
    pub k_sigma: f64,
    /// Threshold as a fraction of the target's peak contrast, in [0, 1].
    #[arg(long, default_value_t = 0.5, value_parser = parse_fraction)]
    pub peak_fraction: f64,
    /// Skip targets less than this many σ above their background.
    #[arg(long, default_value_t = 3.0, value_parser = parse_non_negative)]
    pub min_snr: f64,
    /// Largest mask for a point annotation, in pixels.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_area: u64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: expected a number in [0, 1]")),
    }
}

impl LabelArgs {
    /// The rule these arguments describe.
    pub fn rule(&self) -> LabelRule {
        let window = self.window as usize;
        LabelRule {
            window,
            inner: LabelRule::default().inner.min(window - 1),
            k_sigma: self.k_sigma as f32,
            peak_fraction: self.peak_fraction as f32,
            min_snr: self.min_snr as f32,
            max_area: self.max_area as usize,
            ..LabelRule::default()
        }
    }
}

/// Runs `srsnet label`. Skipped targets are listed and counted; an unreadable frame fails the
/// command at the end (the others are still written).
pub fn run(args: LabelArgs) -> Result<()> {
    let seq = Sequence::open(&args.source)?;
    if !seq.is_annotated() {
        bail!(
            "{}: no centroids.csv or boxes.csv to derive masks from",
            args.source.display()
        );
    }
    let (masks, overlays) = (args.out.join("masks"), args.out.join("overlays"));
    refuse_overwrite([args.source.as_path(), &args.source.join("frames")], &masks)?;
    refuse_overwrite([args.source.as_path(), &args.source.join("frames")], &overlays)?;
    for d in [&masks, &overlays] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let rule = args.rule();
    let (mut targets, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    let mut areas = Vec::new();
    let mut progress = Progress::new("label", seq.frames.len() as u64);
    for f in &seq.frames {
        progress.inc();
        let anns = f.annotations();
        let done = (|| -> Result<(usize, Vec<usize>)> {
            let img = read_frame(&f.path, 1)?;
            let labels = derive_frame(&img.data, img.width, img.height, &anns, &rule);
            for (k, why) in &labels.skipped {
                eprintln!("skipped {} target {} ({}): {why}", f.name, k + 1, describe(anns[*k]));
            }
            let stem = f.path.file_stem().and_then(|s| s.to_str()).unwrap_or("frame");
            write_mask_png(&masks.join(format!("{stem}.png")), img.width, img.height, &labels.mask)?;
            let skipped_anns: Vec<Annotation> = labels.skipped.iter().map(|(k, _)| anns[*k]).collect();
            write_rgb_png(
                &overlays.join(format!("{stem}.png")),
                &overlay(&img.data, img.width, img.height, &labels.mask, &anns, &skipped_anns),
            )?;
            Ok((labels.skipped.len(), labels.areas))
        })();
        match done {
            Ok((s, a)) => {
                targets += anns.len();
                skipped += s;
                areas.extend(a);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", f.path.display());
            }
        }
    }
    progress.finish();
    areas.sort_unstable();
    let area = |q: f64| {
        areas
            .get(((areas.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "derived {} of {targets} target masks in {} frames ({skipped} skipped, listed above); areas px: min {} median {} max {}; wrote {} and {}",
        targets - skipped,
        seq.frames.len() - failed,
        area(0.0),
        area(0.5),
        area(1.0),
        masks.display(),
        overlays.display()
    );
    if failed > 0 {
        bail!("{failed} frames could not be read (see above); the others were labelled");
    }
    if targets > 0 && skipped == targets {
        bail!("no target mask could be derived: check the annotations and the rule's parameters");
    }
    Ok(())
}

fn describe(a: Annotation) -> String {
    match a {
        Annotation::Point(x, y) => format!("point {x:.1},{y:.1}"),
        Annotation::Box(b) => format!("box {:.0},{:.0}–{:.0},{:.0}", b[0], b[1], b[2], b[3]),
    }
}

/// The frame in gray, derived target pixels tinted red, each annotation marked: a green cross
/// for a derived target, a yellow one for a skipped target.
fn overlay(
    img: &[f32],
    w: usize,
    h: usize,
    mask: &[bool],
    anns: &[Annotation],
    skipped: &[Annotation],
) -> image::RgbImage {
    let mut out = overlay::gray(img, w, h);
    for (p, &m) in out.pixels_mut().zip(mask) {
        if m {
            let v = p.0[0];
            p.0 = [255, v / 3, v / 3];
        }
    }
    for a in anns {
        let (x, y) = match *a {
            Annotation::Point(x, y) => (x, y),
            Annotation::Box(b) => ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0),
        };
        let colour = if skipped.contains(a) {
            overlay::SKIPPED
        } else {
            overlay::TRUTH
        };
        overlay::cross(&mut out, x, y, colour);
    }
    out
}
