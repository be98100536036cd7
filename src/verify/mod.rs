//! A second stage that judges each of the net's targets from what the frame shows around it.
//!
//! Why: run after run, lite-deep traded SIRST's extended targets against the clutter of the
//! target-free frames whatever the loss's balance, depth, scale or context (models/README.md,
//! "Can a second stage reject the false targets?"). This stage sees only the few targets the
//! net marks, balanced as the net's loss is not, through features the net does not compute: a
//! ring's contrast around the blob, the local structure's orientation, the peak against the
//! frame. It is a logistic regression on [`FEATURES`], fitted by `srsnet train verifier` on the
//! net's own targets over a recipe's training sets, and stored in the weights' metadata
//! (`info.verifier`); every command that runs those weights applies it unless `--no-verifier`.
//!
//! A logistic model rather than boosted trees or a patch CNN: on the feasibility study's
//! validation data it kept more SIRST targets than trees on the same features and better than
//! a small net on raw patches (which overfitted DAUB's aircraft); it has 20 numbers a person
//! can read, and it costs microseconds per target. It is fitted here by Newton's method (20
//! unknowns) rather than through a crate, whose dependencies (ndarray, argmin) would outweigh
//! the 40 lines. Boosted trees on top of it ([`trees`], `train verifier --trees`) cut more
//! clutter but, on validation, at the cost of faint SIRST targets (models/README.md, "Run
//! `verifier-v30-trees`"), so the shipped verifier is the logistic model alone.

pub mod trees;

use crate::detect::{label_components, Detection, Target};
use crate::image_io::Frame;
use crate::robust;
use serde::{Deserialize, Serialize};

/// The features, in the order of the model's weights.
pub const FEATURES: [&str; 19] = [
    "log_area",
    "peak",
    "mean_prob",
    "log_bbox_w",
    "log_bbox_h",
    "fill",
    "max_int",
    "mean_int",
    "ring_mean",
    "log_ring_std",
    "log_contrast",
    "log_scr",
    "log_window_std",
    "log_frame_z",
    "coherence",
    "log_frame_sigma",
    "log_targets_in_frame",
    "log_contrast_wide",
    "window_excess",
];

/// Number of features.
pub const N: usize = FEATURES.len();

/// Which features a fit may use (`true`: used); a left-out feature gets weight 0, mean 0 and
/// scale 1, so a file fitted without it keeps the 19-value layout every reader expects.
pub type Used = [bool; N];

/// Every feature used.
pub const ALL: Used = [true; N];

/// The features named in `names` left out of [`ALL`]; an unknown name is an error that lists
/// the known ones.
pub fn without(names: &[String]) -> Result<Used, String> {
    let mut used = ALL;
    for name in names {
        let Some(i) = FEATURES.iter().position(|f| f == name) else {
            return Err(format!(
                "no verifier feature is called `{name}`; the features are {}",
                FEATURES.join(", ")
            ));
        };
        used[i] = false;
    }
    Ok(used)
}

/// A pixel counts as the blob's for the intensity features when its probability is above this
/// (the blob's component may be grown below it, and a grown rim is background).
const CORE_PROB: f32 = 0.5;
/// The ring is the band `RING_GAP..=RING_OUT` px outside the bounding box; the wide ring
/// the band beyond it out to `WIDE_OUT`.
const RING_GAP: isize = 3;
const RING_OUT: isize = 8;
const WIDE_OUT: isize = 16;
/// The window around the centroid for its std and the structure tensor, px per side.
const WINDOW: isize = 16;

/// Per-frame statistics the features are relative to (computed once per frame).
#[derive(Debug, Clone, Copy)]
pub struct FrameStats {
    /// The first plane's median.
    pub median: f32,
    /// Its robust std (1.4826 × the median absolute deviation), at least 1e-4.
    pub sigma: f32,
    /// The rule's targets in the frame: clutter comes in crowds, targets mostly alone.
    pub targets: usize,
}

impl FrameStats {
    /// The first plane's median and robust std (1.4826 × MAD), and the frame's `targets`.
    pub fn of(frame: &Frame, targets: usize) -> Self {
        let plane = frame.plane(0);
        let median = robust::median(&mut plane.to_vec());
        let mut dev: Vec<f32> = plane.iter().map(|v| (v - median).abs()).collect();
        let sigma = robust::sigma_from_deviations(&mut dev).max(1e-4);
        Self { median, sigma, targets }
    }
}

/// Sign-preserving log: the scale-like features span decades.
fn slog(v: f32) -> f32 {
    v.signum() * v.abs().ln_1p()
}

/// Mean and std of values.
fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len().max(1) as f32;
    let m = v.iter().sum::<f32>() / n;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / n).sqrt())
}

/// Every target's features in one frame (`prob` its probability map). Two features tried
/// here were dropped because they did not help in cross-validation on the training sets
/// (models/README.md): the distance to the nearest other target and the brightness rank.
pub fn frame_features(targets: &[Target], frame: &Frame, prob: &[f32]) -> Vec<[f32; N]> {
    let stats = FrameStats::of(frame, targets.len());
    targets.iter().map(|t| features(t, frame, prob, &stats)).collect()
}

/// One target's features, from its frame, the frame's probability map and the frame's stats.
fn features(t: &Target, frame: &Frame, prob: &[f32], stats: &FrameStats) -> [f32; N] {
    let [x0, y0, x1, y1] = t.bbox.map(|v| v as isize);
    let w = frame.width;
    let (mut max_int, mut sum_int, mut sum_p, mut n) = (f32::MIN, 0.0f32, 0.0f32, 0usize);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let p = prob[y as usize * w + x as usize];
            if p > CORE_PROB {
                let v = frame.clamped(x, y);
                max_int = max_int.max(v);
                sum_int += v;
                sum_p += p;
                n += 1;
            }
        }
    }
    if n == 0 {
        // A target whose pixels are all at most CORE_PROB (a rule below it): its peak pixel.
        max_int = frame.clamped(t.x.round() as isize, t.y.round() as isize);
        sum_int = max_int;
        sum_p = t.peak;
    }
    let n = n.max(1) as f32;
    let ring = band(frame, t.bbox, RING_GAP, RING_OUT);
    let (ring_mean, ring_std) = mean_std(&ring);
    let wide = band(frame, t.bbox, RING_OUT, WIDE_OUT);
    let wide_max = wide.iter().copied().fold(f32::MIN, f32::max);
    let contrast = max_int - ring_mean;
    let (cx, cy) = (t.x.round() as isize, t.y.round() as isize);
    let window: Vec<f32> = (-WINDOW..WINDOW)
        .flat_map(|dy| (-WINDOW..WINDOW).map(move |dx| frame.clamped(cx + dx, cy + dy)))
        .collect();
    let (bw, bh) = ((x1 - x0 + 1) as f32, (y1 - y0 + 1) as f32);
    [
        slog(t.area as f32),
        t.peak,
        sum_p / n,
        slog(bw),
        slog(bh),
        t.area as f32 / (bw * bh),
        max_int,
        sum_int / n,
        ring_mean,
        slog(ring_std),
        slog(contrast),
        slog(contrast / ring_std.max(1e-3)),
        slog(mean_std(&window).1),
        slog((max_int - stats.median) / stats.sigma),
        coherence(frame, cx, cy),
        slog(stats.sigma),
        (stats.targets as f32).ln_1p(),
        slog(max_int - mean_std(&wide).0),
        max_int - wide_max.max(ring.iter().copied().fold(f32::MIN, f32::max)),
    ]
}

/// The frame's pixels in the band more than `gap` and at most `out` px outside `bbox`
/// ([x0, y0, x1, y1], inclusive), within the frame.
fn band(frame: &Frame, bbox: [usize; 4], gap: isize, out: isize) -> Vec<f32> {
    let [x0, y0, x1, y1] = bbox.map(|v| v as isize);
    let mut v = Vec::new();
    for y in (y0 - out).max(0)..=(y1 + out).min(frame.height as isize - 1) {
        for x in (x0 - out).max(0)..=(x1 + out).min(frame.width as isize - 1) {
            if x < x0 - gap || x > x1 + gap || y < y0 - gap || y > y1 + gap {
                v.push(frame.data[y as usize * frame.width + x as usize]);
            }
        }
    }
    v
}

/// The structure tensor's coherence in the window's central half: 1 for a straight edge or
/// line (roof ridges, rails, the horizon), 0 for an isotropic spot.
fn coherence(frame: &Frame, cx: isize, cy: isize) -> f32 {
    let (mut xx, mut yy, mut xy) = (0.0f32, 0.0f32, 0.0f32);
    let r = WINDOW / 2;
    for y in cy - r..cy + r {
        for x in cx - r..cx + r {
            let gx = frame.clamped(x + 1, y) - frame.clamped(x - 1, y);
            let gy = frame.clamped(x, y + 1) - frame.clamped(x, y - 1);
            xx += gx * gx;
            yy += gy * gy;
            xy += gx * gy;
        }
    }
    ((xx - yy).powi(2) + 4.0 * xy * xy).sqrt() / (xx + yy).max(1e-6)
}

/// The fitted second stage: standardise, weigh, squash; keep a target whose score is at least
/// `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verifier {
    /// The features' means on the fitting rows.
    pub mean: Vec<f32>,
    /// The features' stds on the fitting rows (at least 1e-6).
    pub scale: Vec<f32>,
    /// One weight per standardised feature.
    pub weights: Vec<f32>,
    /// The intercept.
    pub bias: f32,
    /// Boosted trees whose values add to the logistic log-odds (`train verifier --trees`);
    /// absent in files fitted without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<trees::Forest>,
    /// The lowest score kept.
    pub threshold: f32,
}

impl Verifier {
    /// The verifier recorded in a weights file's `info`, if any; an error says what is wrong.
    pub fn from_info(info: &serde_json::Value) -> Result<Option<Self>, String> {
        let Some(v) = info.get("verifier").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let v: Self = serde_json::from_value(v.clone()).map_err(|e| format!("`verifier`: {e}"))?;
        for (name, len) in [
            ("mean", v.mean.len()),
            ("scale", v.scale.len()),
            ("weights", v.weights.len()),
        ] {
            if len != N {
                return Err(format!(
                    "`verifier.{name}` has {len} values, expected {N} (one per feature)"
                ));
            }
        }
        let finite = (v.mean.iter().chain(&v.scale).chain(&v.weights))
            .chain([&v.bias, &v.threshold])
            .all(|x| x.is_finite());
        if !finite || v.scale.iter().any(|&s| s <= 0.0) {
            return Err("`verifier` holds a non-finite number or a scale ≤ 0".into());
        }
        if !(0.0..=1.0).contains(&v.threshold) {
            return Err(format!(
                "`verifier.threshold` is {}, expected a number in [0, 1]",
                v.threshold
            ));
        }
        if let Some(t) = &v.trees {
            t.check()?;
        }
        Ok(Some(v))
    }

    /// Writes the verifier into a weights file's `info`.
    pub fn record(&self, info: &mut serde_json::Value) {
        info["verifier"] = serde_json::to_value(self).unwrap_or_default();
    }

    /// The probability that a target with these features is a true one.
    pub fn score(&self, f: &[f32; N]) -> f32 {
        let trees = self.trees.as_ref().map_or(0.0, |t| t.value(f));
        crate::engine::kernels::sigmoid(self.linear(f) + trees)
    }

    /// The logistic model's log-odds for features `f` (the trees' starting point).
    fn linear(&self, f: &[f32; N]) -> f32 {
        let z: f32 = (0..N)
            .map(|i| self.weights[i] * (f[i] - self.mean[i]) / self.scale[i])
            .sum();
        z + self.bias
    }

    /// Removes from `det` (targets and mask) the targets scored below the threshold; returns
    /// how many it removed.
    pub fn filter(&self, det: &mut Detection, frame: &Frame) -> usize {
        if det.targets.is_empty() {
            return 0;
        }
        let keep: Vec<bool> = frame_features(&det.targets, frame, &det.prob)
            .iter()
            .map(|f| self.score(f) >= self.threshold)
            .collect();
        let removed = keep.iter().filter(|&&k| !k).count();
        if removed == 0 {
            return 0;
        }
        // Target ids are the mask's component labels (both in raster order of first pixels).
        let comps = label_components(&det.target_mask, det.width, det.height);
        for (m, &l) in det.target_mask.iter_mut().zip(&comps.labels) {
            if l > 0 && !keep[l as usize - 1] {
                *m = false;
            }
        }
        let mut k = keep.iter();
        det.targets.retain(|_| *k.next().unwrap_or(&true));
        removed
    }
}

/// One fitting row: a target's features and whether it matched a true target.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The features.
    pub features: [f32; N],
    /// True when the target matched a true one (the field's 3-px centroid rule).
    pub hit: bool,
    /// How much the row counts in the fit and the threshold (1 unless sets are weighed).
    pub weight: f64,
}

/// What a fit makes: the logistic model's penalty and features, and the trees on top of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// L2 penalty on the logistic model's standardised weights (scikit-learn's default is 1).
    pub l2: f64,
    /// The features either part may use.
    pub used: Used,
    /// The boosted trees (`TreeOptions::NONE`: none).
    pub trees: trees::TreeOptions,
}

impl ModelSpec {
    /// The logistic model alone on every feature.
    pub fn logistic(l2: f64) -> Self {
        Self {
            l2,
            used: ALL,
            trees: trees::TreeOptions::NONE,
        }
    }
}

/// Fits the verifier to `rows`: the logistic model, then, if asked, trees boosted from its
/// log-odds. The threshold is left at 0.5.
pub fn fit(rows: &[Row], spec: &ModelSpec) -> Verifier {
    let mut v = fit_logistic(rows, spec.l2, &spec.used);
    if spec.trees.rounds > 0 {
        let base: Vec<f64> = rows.iter().map(|r| v.linear(&r.features) as f64).collect();
        v.trees = Some(trees::boost(rows, &base, &spec.used, spec.trees));
    }
    v
}

/// Fits the logistic model to `rows` by Newton's method with an L2 penalty `l2` on the
/// standardised weights, on the `used` features only (the others' columns are zero, so their
/// weights stay exactly 0).
fn fit_logistic(rows: &[Row], l2: f64, used: &Used) -> Verifier {
    let n = rows.iter().map(|r| r.weight).sum::<f64>().max(1e-12);
    let mut mean = [0f64; N];
    let mut var = [0f64; N];
    for r in rows {
        for (m, &f) in mean.iter_mut().zip(&r.features) {
            *m += r.weight * f as f64 / n;
        }
    }
    for r in rows {
        for ((v, &m), &f) in var.iter_mut().zip(&mean).zip(&r.features) {
            *v += r.weight * (f as f64 - m).powi(2) / n;
        }
    }
    for i in (0..N).filter(|&i| !used[i]) {
        (mean[i], var[i]) = (0.0, 1.0);
    }
    let scale: Vec<f64> = var.iter().map(|v| v.sqrt().max(1e-6)).collect();
    let x: Vec<[f64; N + 1]> = rows
        .iter()
        .map(|r| {
            let mut v = [1.0; N + 1];
            for i in 0..N {
                v[i] = if used[i] {
                    (r.features[i] as f64 - mean[i]) / scale[i]
                } else {
                    0.0
                };
            }
            v
        })
        .collect();
    let beta = newton(&x, rows, l2);
    Verifier {
        mean: mean.iter().map(|&m| m as f32).collect(),
        scale: scale.iter().map(|&s| s as f32).collect(),
        weights: beta[..N].iter().map(|&b| b as f32).collect(),
        bias: beta[N] as f32,
        trees: None,
        threshold: 0.5,
    }
}

/// Newton's method on the penalised log-likelihood (the intercept, last, unpenalised).
fn newton(x: &[[f64; N + 1]], rows: &[Row], l2: f64) -> [f64; N + 1] {
    const M: usize = N + 1;
    let mut beta = [0f64; M];
    for _ in 0..50 {
        let mut grad = [0f64; M];
        let mut hess = [[0f64; M]; M];
        for (xi, r) in x.iter().zip(rows) {
            let z: f64 = xi.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let w = r.weight * (p * (1.0 - p)).max(1e-12);
            let e = r.weight * (p - r.hit as u8 as f64);
            for a in 0..M {
                grad[a] += e * xi[a];
                for b in 0..M {
                    hess[a][b] += w * xi[a] * xi[b];
                }
            }
        }
        for a in 0..N {
            grad[a] += l2 * beta[a];
            hess[a][a] += l2;
        }
        let step = solve(hess, grad);
        let size: f64 = step.iter().map(|s| s.abs()).fold(0.0, f64::max);
        for a in 0..M {
            beta[a] -= step[a];
        }
        if size < 1e-8 {
            break;
        }
    }
    beta
}

/// Solves `a · s = b` by Gaussian elimination with partial pivoting (`a` is positive definite
/// here: a Hessian plus the penalty).
fn solve<const M: usize>(mut a: [[f64; M]; M], mut b: [f64; M]) -> [f64; M] {
    for c in 0..M {
        let p = (c..M)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        b.swap(c, p);
        let d = if a[c][c].abs() < 1e-300 { 1e-300 } else { a[c][c] };
        let pivot = a[c];
        for r in c + 1..M {
            let f = a[r][c] / d;
            for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut s = [0f64; M];
    for c in (0..M).rev() {
        let tail: f64 = (c + 1..M).map(|k| a[c][k] * s[k]).sum();
        let d = if a[c][c].abs() < 1e-300 { 1e-300 } else { a[c][c] };
        s[c] = (b[c] - tail) / d;
    }
    s
}

/// Each row's score by a model fitted on the other folds' rows (`folds`-fold
/// cross-validation): how the model judges targets it did not see. `fold_of[i]` is row i's
/// fold (rows of one frame, or of neighbouring frames of a sequence, share one so that
/// near-copies do not score each other).
pub fn cross_validated_scores(rows: &[Row], fold_of: &[usize], folds: usize, spec: &ModelSpec) -> Vec<f32> {
    let mut scores = vec![0.0; rows.len()];
    for k in 0..folds {
        let train: Vec<Row> = rows
            .iter()
            .zip(fold_of)
            .filter(|(_, &f)| f != k)
            .map(|(r, _)| *r)
            .collect();
        let model = fit(&train, spec);
        for ((s, r), _) in scores.iter_mut().zip(rows).zip(fold_of).filter(|(_, f)| **f == k) {
            *s = model.score(&r.features);
        }
    }
    scores
}

/// The highest threshold that keeps at least `keep` of the true targets' `scores`.
pub fn threshold_keeping(rows: &[Row], scores: &[f32], keep: f64) -> f32 {
    let mut hits: Vec<f32> = rows
        .iter()
        .zip(scores)
        .filter(|(r, _)| r.hit)
        .map(|(_, &s)| s)
        .collect();
    if hits.is_empty() {
        return 0.5;
    }
    hits.sort_by(f32::total_cmp);
    let lost = ((1.0 - keep) * hits.len() as f64).floor() as usize;
    hits[lost.min(hits.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::TargetRule;

    /// A 64×64 frame at 0.2 with a 3×3 spot of 0.9 at (16, 16) and a bright 1-px-wide
    /// vertical line at x = 48 (a roof edge's kind of structure).
    fn frame_with_spot_and_line() -> (Frame, Vec<f32>) {
        let (w, h) = (64, 64);
        let mut data = vec![0.2f32; w * h];
        let mut prob = vec![0.0f32; w * h];
        for y in 15..=17 {
            for x in 15..=17 {
                data[y * w + x] = 0.9;
                prob[y * w + x] = 0.95;
            }
        }
        for y in 0..h {
            data[y * w + 48] = 0.9;
        }
        for y in 30..=33 {
            prob[y * w + 48] = 0.9;
        }
        (Frame::new(w, h, 1, data).unwrap(), prob)
    }

    fn feature(f: &[f32; N], name: &str) -> f32 {
        f[FEATURES.iter().position(|&n| n == name).unwrap()]
    }

    #[test]
    fn features_tell_a_spot_from_a_line() {
        let (frame, prob) = frame_with_spot_and_line();
        let det = Detection::from_prob(64, 64, prob.clone(), TargetRule::plain(0.5));
        assert_eq!(det.targets.len(), 2);
        let f = frame_features(&det.targets, &frame, &prob);
        let (spot, line) = (f[0], f[1]);
        // The spot: 9 px, contrast 0.7 over a flat ring, isotropic.
        assert!((feature(&spot, "log_area") - 10f32.ln()).abs() < 1e-5);
        assert!((feature(&spot, "log_contrast") - 1.7f32.ln()).abs() < 1e-5);
        assert!(feature(&spot, "coherence") < 0.05, "{spot:?}");
        assert!((feature(&spot, "fill") - 1.0).abs() < 1e-6);
        // The line runs through its own ring (the ring is not flat) and is coherent.
        assert!(feature(&line, "coherence") > 0.95, "{line:?}");
        assert!(feature(&line, "log_ring_std") > 0.05, "{line:?}");
        assert!(feature(&line, "log_scr") < feature(&spot, "log_scr"));
    }

    #[test]
    fn filter_removes_rejected_targets_and_their_pixels() {
        let (frame, prob) = frame_with_spot_and_line();
        let mut det = Detection::from_prob(64, 64, prob, TargetRule::plain(0.5));
        // Keeps isotropic targets only: the score falls with coherence.
        let c = FEATURES.iter().position(|&n| n == "coherence").unwrap();
        let mut weights = vec![0.0; N];
        weights[c] = -20.0;
        let v = Verifier {
            mean: vec![0.0; N],
            scale: vec![1.0; N],
            weights,
            bias: 10.0,
            trees: None,
            threshold: 0.5,
        };
        assert_eq!(v.filter(&mut det, &frame), 1);
        assert_eq!(det.targets.len(), 1);
        assert_eq!(det.targets[0].bbox, [15, 15, 17, 17]);
        assert_eq!(det.target_mask.iter().filter(|&&m| m).count(), 9);
        assert!(!det.target_mask[31 * 64 + 48]);
    }

    /// Row i's two varying features: a spread over [−1, 1]² without a pattern in i.
    pub(super) fn spread(i: usize) -> (f32, f32) {
        (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        )
    }

    /// Rows whose label follows feature 0 (and, weakly, feature 1), with label noise.
    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let (a, b) = spread(i);
                let mut features = [0.0; N];
                features[0] = a;
                features[1] = b;
                features[2] = 5.0; // constant: its scale is floored, its weight stays 0
                let hit = (a + 0.2 * b > 0.0) != (i % 23 == 0);
                Row {
                    features,
                    hit,
                    weight: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn fit_learns_the_rule_behind_the_labels() {
        let rows = rows(600);
        let v = fit(&rows, &ModelSpec::logistic(1.0));
        assert!(v.weights[0] > 2.0 && v.weights[1] > 0.0, "{v:?}");
        assert!(v.weights[0] > 3.0 * v.weights[1], "{v:?}");
        assert!(v.weights[2].abs() < 1e-9, "{v:?}");
        let correct = rows.iter().filter(|r| (v.score(&r.features) >= 0.5) == r.hit).count();
        // 26 of 600 labels are flipped; the rule gets nearly all the others.
        assert!(correct >= 560, "{correct} of 600");
    }

    #[test]
    fn a_left_out_feature_weighs_nothing_and_the_others_take_its_place() {
        let rows = rows(600);
        let used = without(&["log_area".to_string()]).unwrap();
        let v = fit(
            &rows,
            &ModelSpec {
                used,
                ..ModelSpec::logistic(1.0)
            },
        );
        assert_eq!((v.weights[0], v.mean[0], v.scale[0]), (0.0, 0.0, 1.0));
        // Feature 1, the label's weaker cause, is what is left to explain it, and explains less.
        assert!(v.weights[1] > 0.1, "{v:?}");
        let correct = |m: &Verifier| rows.iter().filter(|r| (m.score(&r.features) >= 0.5) == r.hit).count();
        assert!(
            correct(&v) + 100 < correct(&fit(&rows, &ModelSpec::logistic(1.0))),
            "{v:?}"
        );
        let mut moved = rows[0];
        moved.features[0] += 100.0;
        assert_eq!(v.score(&moved.features), v.score(&rows[0].features));
        let e = without(&["log_area".into(), "area".into()]).unwrap_err();
        assert!(e.contains("`area`") && e.contains("log_area, peak"), "{e}");
    }

    #[test]
    fn a_row_of_weight_two_counts_as_two_rows() {
        let rows = rows(300);
        let mut doubled = rows.clone();
        doubled.extend(rows.iter().filter(|r| r.hit).copied());
        let weighed: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                weight: if r.hit { 2.0 } else { 1.0 },
                ..*r
            })
            .collect();
        let (a, b) = (
            fit(&doubled, &ModelSpec::logistic(1.0)),
            fit(&weighed, &ModelSpec::logistic(1.0)),
        );
        for (x, y) in a.weights.iter().zip(&b.weights).chain([(&a.bias, &b.bias)]) {
            assert!((x - y).abs() < 1e-4, "{a:?} {b:?}");
        }
        let scores: Vec<f32> = weighed.iter().map(|r| a.score(&r.features)).collect();
        let doubled_scores: Vec<f32> = doubled.iter().map(|r| a.score(&r.features)).collect();
        assert_eq!(
            threshold_keeping(&weighed, &scores, 0.9),
            threshold_keeping(&doubled, &doubled_scores, 0.9)
        );
    }

    #[test]
    fn the_cross_validated_threshold_keeps_the_asked_share_of_hits() {
        let rows = rows(600);
        let folds: Vec<usize> = (0..600).map(|i| i * 5 / 600).collect();
        let t = threshold_keeping(
            &rows,
            &cross_validated_scores(&rows, &folds, 5, &ModelSpec::logistic(1.0)),
            0.9,
        );
        let v = fit(&rows, &ModelSpec::logistic(1.0));
        let hits: Vec<&Row> = rows.iter().filter(|r| r.hit).collect();
        let kept = hits.iter().filter(|r| v.score(&r.features) >= t).count() as f64 / hits.len() as f64;
        assert!((0.85..=0.95).contains(&kept), "kept {kept} at {t}");
        assert!(t > 0.05 && t < 0.95, "{t}");
    }

    #[test]
    fn a_recorded_verifier_reads_back_and_a_damaged_one_is_named() {
        let v = fit(&rows(200), &ModelSpec::logistic(1.0));
        let mut info = serde_json::json!({});
        v.record(&mut info);
        let back = Verifier::from_info(&info).unwrap().unwrap();
        assert_eq!(back, v);
        assert_eq!(Verifier::from_info(&serde_json::json!({})).unwrap(), None);
        let mut short = info.clone();
        short["verifier"]["weights"] = serde_json::json!([1.0, 2.0, 3.0]);
        let e = Verifier::from_info(&short).unwrap_err();
        assert!(
            e.contains("verifier.weights") && e.contains("3 values") && e.contains(&N.to_string()),
            "{e}"
        );
        let mut bad = info.clone();
        bad["verifier"]["threshold"] = serde_json::json!(1.5);
        assert!(Verifier::from_info(&bad).unwrap_err().contains("verifier.threshold"));
        let mut missing = info;
        missing["verifier"].as_object_mut().unwrap().remove("bias");
        assert!(Verifier::from_info(&missing).unwrap_err().contains("bias"));
    }
}
