//! `srsnet eval`: the field's metrics for a model on a labelled set, for mask files made by
//! anything else, or (Pd/Fa) for sequences annotated with target centroids.

use crate::eval::metrics::{MetricAccumulator, Metrics};
use crate::image_io::read_frame;
use crate::infer::Segmenter;
use crate::train::data::{read_mask, PairLayout};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Scores `seg` on the pairs of `layout` listed in `split` (all when none) at native resolution.
/// Returns the metrics and the number of pairs that could not be scored (each reported).
pub fn eval_model(
    seg: &Segmenter,
    layout: &PairLayout,
    split: Option<&Path>,
    threshold: f32,
) -> Result<(Metrics, usize)> {
    let (mut rows, failed) = sweep_model(seg, layout, split, &[threshold])?;
    Ok((rows.remove(0), failed))
}

/// Scores `seg` at several thresholds in one pass (probabilities computed once per image).
pub fn sweep_model(
    seg: &Segmenter,
    layout: &PairLayout,
    split: Option<&Path>,
    thresholds: &[f32],
) -> Result<(Vec<Metrics>, usize)> {
    let mut accs = vec![MetricAccumulator::default(); thresholds.len()];
    let mut failed = 0;
    for name in layout.names(split)? {
        let scored = (|| -> Result<()> {
            let frame = read_frame(&layout.image_path(&name), seg.channels())?;
            let gt = read_mask(&layout.mask_path(&name))?;
            if (gt.width, gt.height) != (frame.width, frame.height) {
                bail!(
                    "mask is {}×{}, image {}×{}",
                    gt.width,
                    gt.height,
                    frame.width,
                    frame.height
                );
            }
            let det = seg.detect(&frame, thresholds[0])?;
            let gt: Vec<bool> = gt.data.iter().map(|&v| v > 0.5).collect();
            for (acc, &t) in accs.iter_mut().zip(thresholds) {
                acc.add_mask(&det.mask(t), &gt, frame.width, frame.height);
            }
            Ok(())
        })();
        if let Err(e) = scored {
            failed += 1;
            eprintln!("skipped {name}: {e:#}");
        }
    }
    Ok((accs.iter().map(MetricAccumulator::finish).collect(), failed))
}

/// Scores prediction masks in `pred` against `gt` (pairs matched by file stem; `gt_suffix`
/// is appended to the stem for the ground-truth name).
pub fn eval_masks(pred: &Path, gt: &Path, gt_suffix: &str) -> Result<(Metrics, usize)> {
    let mut acc = MetricAccumulator::default();
    let mut failed = 0;
    let mut entries: Vec<_> = std::fs::read_dir(pred)
        .with_context(|| format!("reading {}", pred.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for p in entries {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let ext = p.extension().and_then(|s| s.to_str()).unwrap_or("png");
        let g = gt.join(format!("{stem}{gt_suffix}.{ext}"));
        let scored = (|| -> Result<()> {
            let (pm, gm) = (read_mask(&p)?, read_mask(&g)?);
            if (pm.width, pm.height) != (gm.width, gm.height) {
                bail!(
                    "prediction is {}×{}, ground truth {}×{}",
                    pm.width,
                    pm.height,
                    gm.width,
                    gm.height
                );
            }
            let b = |v: &[f32]| v.iter().map(|&x| x > 0.5).collect::<Vec<bool>>();
            acc.add_mask(&b(&pm.data), &b(&gm.data), pm.width, pm.height);
            Ok(())
        })();
        if let Err(e) = scored {
            failed += 1;
            eprintln!("skipped {}: {e:#}", p.display());
        }
    }
    Ok((acc.finish(), failed))
}

/// Reads a DAUB-style `centroids.csv` (frame,x,y; x = column, y = row).
pub fn read_centroids(path: &Path) -> Result<Vec<(String, f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let parse = |s: &str| {
            s.parse::<f64>()
                .with_context(|| format!("{}:{}: bad number `{s}`", path.display(), i + 1))
        };
        if f.len() != 3 {
            bail!("{}:{}: expected frame,x,y", path.display(), i + 1);
        }
        out.push((f[0].to_string(), parse(f[1])?, parse(f[2])?));
    }
    Ok(out)
}

/// Pd and Fa on a sequence folder (`frames/` + `centroids.csv`) with the 3-pixel centroid rule.
pub fn eval_sequence(seg: &Segmenter, dir: &Path, threshold: f32) -> Result<(Metrics, usize)> {
    let mut acc = MetricAccumulator::default();
    let mut failed = 0;
    for (frame_name, x, y) in read_centroids(&dir.join("centroids.csv"))? {
        let path = dir.join("frames").join(&frame_name);
        match read_frame(&path, seg.channels()).and_then(|f| Ok((seg.detect(&f, threshold)?, f))) {
            Ok((det, f)) => acc.add_points(&det.mask(threshold), f.width, f.height, &[(y, x)]),
            Err(e) => {
                failed += 1;
                eprintln!("skipped {}: {e:#}", path.display());
            }
        }
    }
    Ok((acc.finish(), failed))
}

/// A table for people; `points_only` for centroid-annotated sequences (Pd and Fa only).
pub fn table(label: &str, m: &Metrics, points_only: bool) -> String {
    if points_only {
        return format!(
            "{label} (centroid rule, {} px)\n  frames {}  targets {}  hits {}\n  Pd     {:.4}\n  Fa     {:.2} ×1e-6",
            crate::eval::metrics::MATCH_DISTANCE,
            m.images,
            m.targets,
            m.hits,
            m.pd,
            m.fa * 1e6
        );
    }
    format!(
        "{label}\n  images {}  targets {}  hits {}\n  IoU    {:.4}\n  nIoU   {:.4}\n  F1     {:.4}\n  Pd     {:.4}\n  Fa     {:.2} ×1e-6\n  paper per-image IoU {:.4}  F1 {:.4}",
        m.images,
        m.targets,
        m.hits,
        m.iou,
        m.niou,
        m.f1,
        m.pd,
        m.fa * 1e6,
        m.paper_iou,
        m.paper_f1
    )
}
