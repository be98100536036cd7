//! Every detection of a net on a recipe's sets, with what the frame shows around it, for
//! studying whether a second stage could tell the net's true targets from its false ones
//! (models/README.md, "Can a second stage reject the false targets?").
//!
//! cargo run --release --example detection_features -- WEIGHTS THRESHOLD RECIPE (train|val) OUT_PREFIX
//!
//! Writes OUT_PREFIX.csv (one row per detection: set, frame, whether it matched a true target
//! by the field's 3-pixel centroid rule, and its features), OUT_PREFIX.sets.csv (targets,
//! hits and frames per set, so that a filter's Pd and false targets per frame follow from the
//! rows) and OUT_PREFIX.patches.f32 (per row, a 32×32 window of the frame around the
//! detection, less the window's median, over the frame's robust std; little-endian f32).
use anyhow::{bail, Context, Result};
use srsnet::dataset::Truth;
use srsnet::detect::{blobs, Target};
use srsnet::eval::metrics::MATCH_DISTANCE;
use srsnet::image_io::Frame;
use srsnet::infer::{Segmenter, TargetRule};
use srsnet::robust;
use srsnet::train::recipe::{load_validation, Recipe};
use std::io::Write;
use std::path::Path;

const PATCH: usize = 32;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        bail!("usage: detection_features WEIGHTS THRESHOLD RECIPE (train|val) OUT_PREFIX");
    }
    let seg = Segmenter::new("net", Path::new(&args[0]), &candle_core::Device::Cpu, Default::default())?;
    let rule = TargetRule::plain(args[1].parse().context("THRESHOLD")?);
    let mut recipe = Recipe::from_file(Path::new(&args[2]))?;
    if args[3] == "train" {
        recipe = recipe.training_as_validation()?;
    }
    let (sets, _) = load_validation(&recipe, seg.channels())?;
    let out = &args[4];
    let mut rows = std::io::BufWriter::new(std::fs::File::create(format!("{out}.csv"))?);
    let mut patches = std::io::BufWriter::new(std::fs::File::create(format!("{out}.patches.f32"))?);
    let mut summary = std::fs::File::create(format!("{out}.sets.csv"))?;
    writeln!(rows, "set,frame,hit,{}", FEATURES.join(","))?;
    writeln!(summary, "set,targets,hits,frames")?;
    for set in &sets {
        let (mut targets, mut hits) = (0, 0);
        for item in &set.items {
            let det = seg.detect(&item.image, rule)?;
            let truth = truth_points(&item.truth, item.image.width, item.image.height);
            let matched = matches(&det.targets, &truth);
            targets += truth.len();
            hits += matched.iter().filter(|&&m| m).count();
            let stats = FrameStats::of(&item.image);
            for (t, &m) in det.targets.iter().zip(&matched) {
                let f = features(t, &item.image, &det.prob, &stats);
                let line: Vec<String> = f.iter().map(|v| format!("{v:.5}")).collect();
                writeln!(rows, "{},{},{},{}", set.name, item.name, m as u8, line.join(","))?;
                for v in patch(&item.image, t, &stats) {
                    patches.write_all(&v.to_le_bytes())?;
                }
            }
        }
        writeln!(summary, "{},{targets},{hits},{}", set.name, set.items.len())?;
        eprintln!("{}: {hits} of {targets} targets, {} frames", set.name, set.items.len());
    }
    Ok(())
}

fn truth_points(truth: &Truth, w: usize, h: usize) -> Vec<(f64, f64)> {
    match truth {
        Truth::Mask(m) => blobs(m, w, h).iter().map(|b| (b.x, b.y)).collect(),
        Truth::Points(p) => p.clone(),
    }
}

/// Which detections a true target took, by `metrics::match_points`'s rule.
fn matches(found: &[Target], truth: &[(f64, f64)]) -> Vec<bool> {
    let mut matched = vec![false; found.len()];
    for &(x, y) in truth {
        let near = |k: &usize| {
            let b = found[*k].blob();
            !matched[*k] && ((b.x - x).powi(2) + (b.y - y).powi(2)).sqrt() < MATCH_DISTANCE
        };
        if let Some(k) = (0..found.len()).find(near) {
            matched[k] = true;
        }
    }
    matched
}

struct FrameStats {
    median: f32,
    sigma: f32,
}

impl FrameStats {
    fn of(frame: &Frame) -> Self {
        let plane = &frame.data[..frame.width * frame.height];
        let median = robust::median(&mut plane.to_vec());
        let mut dev: Vec<f32> = plane.iter().map(|v| (v - median).abs()).collect();
        let sigma = robust::sigma_from_deviations(&mut dev).max(1e-3);
        Self { median, sigma }
    }
}

const FEATURES: [&str; 16] = [
    "area",
    "peak",
    "mean_prob",
    "bbox_w",
    "bbox_h",
    "fill",
    "max_int",
    "mean_int",
    "ring_mean",
    "ring_std",
    "contrast",
    "scr",
    "window_std",
    "frame_z",
    "coherence",
    "frame_sigma",
];

/// Value at (x, y), clamped to the frame.
fn at(frame: &Frame, x: isize, y: isize) -> f32 {
    let x = x.clamp(0, frame.width as isize - 1) as usize;
    let y = y.clamp(0, frame.height as isize - 1) as usize;
    frame.data[y * frame.width + x]
}

fn features(t: &Target, frame: &Frame, prob: &[f32], stats: &FrameStats) -> Vec<f32> {
    let [x0, y0, x1, y1] = t.bbox.map(|v| v as isize);
    let (w, h) = (frame.width, frame.height);
    let (mut max_int, mut sum_int, mut sum_p, mut n) = (f32::MIN, 0.0f32, 0.0f32, 0usize);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let p = prob[y as usize * w + x as usize];
            if p > 0.5 {
                let v = at(frame, x, y);
                max_int = max_int.max(v);
                sum_int += v;
                sum_p += p;
                n += 1;
            }
        }
    }
    let n = n.max(1) as f32;
    // The ring 3–8 px outside the bounding box.
    let mut ring = Vec::new();
    for y in (y0 - 8)..=(y1 + 8) {
        for x in (x0 - 8)..=(x1 + 8) {
            let outside = x < x0 - 3 || x > x1 + 3 || y < y0 - 3 || y > y1 + 3;
            if outside && x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                ring.push(at(frame, x, y));
            }
        }
    }
    let ring_mean = ring.iter().sum::<f32>() / ring.len().max(1) as f32;
    let ring_std = (ring.iter().map(|v| (v - ring_mean).powi(2)).sum::<f32>() / ring.len().max(1) as f32).sqrt();
    let contrast = max_int - ring_mean;
    let (cx, cy) = (t.x.round() as isize, t.y.round() as isize);
    let win: Vec<f32> = (-16..16)
        .flat_map(|dy| (-16..16).map(move |dx| (dx, dy)))
        .map(|(dx, dy)| at(frame, cx + dx, cy + dy))
        .collect();
    let wm = win.iter().sum::<f32>() / win.len() as f32;
    let window_std = (win.iter().map(|v| (v - wm).powi(2)).sum::<f32>() / win.len() as f32).sqrt();
    vec![
        t.area as f32,
        t.peak,
        sum_p / n,
        (x1 - x0 + 1) as f32,
        (y1 - y0 + 1) as f32,
        t.area as f32 / ((x1 - x0 + 1) * (y1 - y0 + 1)) as f32,
        max_int,
        sum_int / n,
        ring_mean,
        ring_std,
        contrast,
        contrast / ring_std.max(1e-3),
        window_std,
        (max_int - stats.median) / stats.sigma,
        coherence(frame, cx, cy),
        stats.sigma,
    ]
}

/// The structure tensor's coherence in the 16×16 window: 1 for a straight edge or line (roof
/// ridges, rails), 0 for an isotropic spot.
fn coherence(frame: &Frame, cx: isize, cy: isize) -> f32 {
    let (mut xx, mut yy, mut xy) = (0.0f32, 0.0f32, 0.0f32);
    for y in cy - 8..cy + 8 {
        for x in cx - 8..cx + 8 {
            let gx = at(frame, x + 1, y) - at(frame, x - 1, y);
            let gy = at(frame, x, y + 1) - at(frame, x, y - 1);
            xx += gx * gx;
            yy += gy * gy;
            xy += gx * gy;
        }
    }
    let d = ((xx - yy).powi(2) + 4.0 * xy * xy).sqrt();
    d / (xx + yy).max(1e-6)
}

fn patch(frame: &Frame, t: &Target, stats: &FrameStats) -> Vec<f32> {
    let (cx, cy) = (t.x.round() as isize, t.y.round() as isize);
    let half = PATCH as isize / 2;
    let win: Vec<f32> = (-half..half)
        .flat_map(|dy| (-half..half).map(move |dx| (dx, dy)))
        .map(|(dx, dy)| at(frame, cx + dx, cy + dy))
        .collect();
    let m = robust::median(&mut win.clone());
    win.iter().map(|v| (v - m) / stats.sigma).collect()
}
