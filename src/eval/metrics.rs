//! The field's evaluation metrics, exactly as BasicIRSTD's `metrics.py` computes them
//! (see `../shared/docs/metrics.md`): dataset IoU, nIoU, pixel F1, target Pd and pixel Fa,
//! plus the SRSNet paper's per-image mean IoU and F1, and the centroid-only Pd/Fa rule.

use crate::detect::label_components;
use serde::{Deserialize, Serialize};

/// Distance below which a predicted centroid matches a ground-truth target (pixels).
pub const MATCH_DISTANCE: f64 = 3.0;

/// Accumulates the metrics over images at their native resolution.
#[derive(Debug, Clone, Default)]
pub struct MetricAccumulator {
    inter: u64,
    union: u64,
    tp: u64,
    fp: u64,
    fn_: u64,
    niou_sum: f64,
    paper_iou_sum: f64,
    paper_f1_sum: f64,
    images: usize,
    targets: usize,
    hits: usize,
    false_pixels: u64,
    pixels: u64,
}

/// The metrics of a set of images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Dataset-level Σ|P∩G| / Σ|P∪G|.
    pub iou: f64,
    /// Mean per-image |P∩G| / (ε + |P∪G|); empty/empty scores 0 (BasicIRSTD).
    pub niou: f64,
    /// Pixel-level F1 from TP/FP/FN summed over the dataset.
    pub f1: f64,
    /// Detected targets / ground-truth targets.
    pub pd: f64,
    /// Unmatched predicted pixels / all pixels (multiply by 1e6 for the usual tables).
    pub fa: f64,
    /// The SRSNet paper's per-image mean IoU ((|P∩G|+1e-5)/(|P∪G|+1e-5); empty/empty scores 1).
    pub paper_iou: f64,
    /// The SRSNet paper's per-image mean F1 (per-image Dice with its 1e-6 terms).
    pub paper_f1: f64,
    pub images: usize,
    pub targets: usize,
    pub hits: usize,
}

/// A connected component's unweighted centroid (row, col) and pixel count.
fn component_stats(mask: &[bool], w: usize, h: usize) -> (Vec<(f64, f64)>, Vec<u64>) {
    let comps = label_components(mask, w, h);
    let mut sums = vec![(0f64, 0f64); comps.count];
    let mut areas = vec![0u64; comps.count];
    for (i, &l) in comps.labels.iter().enumerate() {
        if l > 0 {
            let k = l as usize - 1;
            sums[k].0 += (i / w) as f64;
            sums[k].1 += (i % w) as f64;
            areas[k] += 1;
        }
    }
    let cents = sums
        .iter()
        .zip(&areas)
        .map(|(s, &a)| (s.0 / a as f64, s.1 / a as f64))
        .collect();
    (cents, areas)
}

impl MetricAccumulator {
    /// Adds one image: `pred` and `gt` binary masks of `w`×`h`.
    pub fn add_mask(&mut self, pred: &[bool], gt: &[bool], w: usize, h: usize) {
        let (mut i, mut u, mut fp, mut fn_) = (0u64, 0u64, 0u64, 0u64);
        for (&p, &g) in pred.iter().zip(gt) {
            i += (p && g) as u64;
            u += (p || g) as u64;
            fp += (p && !g) as u64;
            fn_ += (!p && g) as u64;
        }
        self.inter += i;
        self.union += u;
        self.tp += i;
        self.fp += fp;
        self.fn_ += fn_;
        self.niou_sum += i as f64 / (f64::EPSILON + u as f64);
        self.paper_iou_sum += (i as f64 + 1e-5) / (u as f64 + 1e-5);
        let se = i as f64 / (i as f64 + fn_ as f64 + 1e-6);
        let pc = i as f64 / (i as f64 + fp as f64 + 1e-6);
        self.paper_f1_sum += 2.0 * se * pc / (se + pc + 1e-6);
        let (gt_cents, _) = component_stats(gt, w, h);
        self.add_targets(pred, w, h, &gt_cents);
    }

    /// Adds one image annotated with target points only (row, col): the centroid rule for
    /// sequences such as DAUB. Contributes to Pd and Fa only.
    pub fn add_points(&mut self, pred: &[bool], w: usize, h: usize, points_row_col: &[(f64, f64)]) {
        self.add_targets(pred, w, h, points_row_col);
    }

    fn add_targets(&mut self, pred: &[bool], w: usize, h: usize, gt_cents: &[(f64, f64)]) {
        let (pred_cents, pred_areas) = component_stats(pred, w, h);
        let mut matched = vec![false; pred_cents.len()];
        for g in gt_cents {
            let hit = (0..pred_cents.len()).find(|&k| {
                let d = ((pred_cents[k].0 - g.0).powi(2) + (pred_cents[k].1 - g.1).powi(2)).sqrt();
                !matched[k] && d < MATCH_DISTANCE
            });
            if let Some(k) = hit {
                matched[k] = true;
                self.hits += 1;
            }
        }
        self.targets += gt_cents.len();
        self.false_pixels += pred_areas
            .iter()
            .zip(&matched)
            .filter(|(_, &m)| !m)
            .map(|(a, _)| a)
            .sum::<u64>();
        self.pixels += (w * h) as u64;
        self.images += 1;
    }

    pub fn finish(&self) -> Metrics {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let p = ratio(self.tp as f64, (self.tp + self.fp) as f64);
        let r = ratio(self.tp as f64, (self.tp + self.fn_) as f64);
        let n = self.images.max(1) as f64;
        Metrics {
            iou: ratio(self.inter as f64, self.union as f64),
            niou: self.niou_sum / n,
            f1: ratio(2.0 * p * r, p + r),
            pd: ratio(self.hits as f64, self.targets as f64),
            fa: ratio(self.false_pixels as f64, self.pixels as f64),
            paper_iou: self.paper_iou_sum / n,
            paper_f1: self.paper_f1_sum / n,
            images: self.images,
            targets: self.targets,
            hits: self.hits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_prediction_scores_one() {
        let mut m = MetricAccumulator::default();
        let mask = vec![false, true, true, false, false, false, false, false, true];
        m.add_mask(&mask, &mask, 3, 3);
        let r = m.finish();
        assert_eq!((r.iou, r.pd, r.fa, r.targets), (1.0, 1.0, 0.0, 2));
        assert!((r.f1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_far_detection_is_a_false_alarm() {
        let mut m = MetricAccumulator::default();
        let mut gt = vec![false; 100];
        gt[0] = true;
        let mut pred = vec![false; 100];
        pred[99] = true;
        m.add_mask(&pred, &gt, 10, 10);
        let r = m.finish();
        assert_eq!(r.pd, 0.0);
        assert_eq!(r.fa, 0.01);
        assert_eq!(r.niou, 0.0);
    }
}
