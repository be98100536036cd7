//! The field's evaluation metrics, exactly as BasicIRSTD's `metrics.py` computes them
//! (see `../shared/docs/metrics.md`): dataset IoU, nIoU, pixel F1, target Pd and pixel Fa,
//! plus the SRSNet paper's per-image mean IoU and F1, and the centroid-only Pd/Fa rule.

use crate::dataset::Truth;
use crate::detect::{blobs, Blob};
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
    false_targets: usize,
    pixels: u64,
}

/// The metrics of a set of images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
    /// Images (frames) scored.
    pub images: usize,
    /// Ground-truth targets.
    pub targets: usize,
    /// Ground-truth targets detected.
    pub hits: usize,
    /// Detected objects that matched no target.
    pub false_targets: usize,
    /// False targets per image: what a user sees on every frame.
    pub false_targets_per_frame: f64,
}

/// What matching one frame's blobs against its true target centres found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointMatch {
    /// True targets with a blob whose centroid is closer than [`MATCH_DISTANCE`].
    pub hits: usize,
    /// Pixels of the blobs that matched no target.
    pub false_pixels: u64,
    /// Blobs that matched no target (false targets).
    pub false_targets: usize,
}

/// The field's matching rule (BasicIRSTD's PD_FA): each true centre, in order, takes the
/// first unmatched blob closer than [`MATCH_DISTANCE`]; unmatched blobs are false alarms.
/// Truth points are (x = column, y = row).
pub fn match_points(blobs: &[Blob], truth: &[(f64, f64)]) -> PointMatch {
    let matched = matched_blobs(blobs, truth);
    let unmatched = blobs.iter().zip(&matched).filter(|(_, &m)| !m);
    PointMatch {
        hits: matched.iter().filter(|&&m| m).count(),
        false_pixels: unmatched.clone().map(|(b, _)| b.area).sum(),
        false_targets: unmatched.count(),
    }
}

/// Per blob, whether [`match_points`]'s rule gives it to a true centre.
pub fn matched_blobs(blobs: &[Blob], truth: &[(f64, f64)]) -> Vec<bool> {
    let mut matched = vec![false; blobs.len()];
    for &(x, y) in truth {
        let hit = (0..blobs.len())
            .find(|&k| !matched[k] && ((blobs[k].x - x).powi(2) + (blobs[k].y - y).powi(2)).sqrt() < MATCH_DISTANCE);
        if let Some(k) = hit {
            matched[k] = true;
        }
    }
    matched
}

/// A frame's true target centres: its mask's components' centroids, or its points.
pub fn truth_points(truth: &Truth, w: usize, h: usize) -> Vec<(f64, f64)> {
    match truth {
        Truth::Mask(gt) => mask_centres(gt, w, h),
        Truth::Points(p) => p.clone(),
    }
}

/// The centroids of a ground-truth mask's components: its targets' centres.
fn mask_centres(gt: &[bool], w: usize, h: usize) -> Vec<(f64, f64)> {
    blobs(gt, w, h).iter().map(|b| (b.x, b.y)).collect()
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
        let truth = mask_centres(gt, w, h);
        self.add_points(pred, w, h, &truth);
    }

    /// Adds one image annotated with target points only (x = column, y = row): the centroid
    /// rule for sequences such as DAUB. Contributes to Pd, Fa and false targets only.
    pub fn add_points(&mut self, pred: &[bool], w: usize, h: usize, truth: &[(f64, f64)]) {
        self.add_blobs(&blobs(pred, w, h), truth, w, h);
    }

    /// Adds one `w`×`h` frame's predicted mask against whatever truth it has.
    pub fn add(&mut self, pred: &[bool], w: usize, h: usize, truth: &Truth) {
        match truth {
            Truth::Mask(gt) => self.add_mask(pred, gt, w, h),
            Truth::Points(p) => self.add_points(pred, w, h, p),
        }
    }

    /// Adds one `w`×`h` frame's detected blobs against its true target centres.
    pub fn add_blobs(&mut self, found: &[Blob], truth: &[(f64, f64)], w: usize, h: usize) {
        let m = match_points(found, truth);
        self.hits += m.hits;
        self.targets += truth.len();
        self.false_pixels += m.false_pixels;
        self.false_targets += m.false_targets;
        self.pixels += (w * h) as u64;
        self.images += 1;
    }

    /// Images added so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// The metrics of everything added.
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
            false_targets: self.false_targets,
            false_targets_per_frame: ratio(self.false_targets as f64, self.images as f64),
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
        assert_eq!((r.false_targets, r.false_targets_per_frame), (1, 1.0));
    }

    #[test]
    fn matching_uses_x_as_column_and_unweighted_centroids() {
        // A 3-pixel blob in row 1, columns 4..=6: centroid (x 5, y 1).
        let mut mask = vec![false; 10 * 4];
        for x in 4..=6 {
            mask[10 + x] = true;
        }
        let b = blobs(&mask, 10, 4);
        assert_eq!(
            b,
            vec![Blob {
                x: 5.0,
                y: 1.0,
                area: 3
            }]
        );
        assert_eq!(match_points(&b, &[(5.0, 1.0)]).hits, 1);
        // The transposed point (x 1, y 5) is 5.7 px away: a miss and 3 false pixels.
        let m = match_points(&b, &[(1.0, 5.0)]);
        assert_eq!((m.hits, m.false_pixels, m.false_targets), (0, 3, 1));
    }
}
