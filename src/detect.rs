//! From a probability map to targets: the target rule (a threshold, optionally with hysteresis),
//! 8-connected components, and per target its probability-weighted sub-pixel centroid, area,
//! bounding box and peak probability.

use serde::{Deserialize, Serialize};

/// Which pixels of a probability map are target (the one rule for `infer`, `run`, `eval` and
/// the trainer's validations, `--val-grow`).
///
/// Plain: `prob > threshold`, strictly. With `grow` (hysteresis, as in Canny's edge linking):
/// the 8-connected components of `prob > grow` that hold at least one pixel of `prob >
/// threshold`. Why: whether there is a target and how far it extends are different questions.
/// A net trained against clutter gives confident peaks only to targets, but its probabilities
/// fall off well inside the target's edge, so one threshold high enough to reject clutter also
/// shrinks every mask. A grown component always holds one or more of the plain rule's
/// components, so hysteresis never reports more targets than the plain rule; it only widens
/// (and may merge) them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetRule {
    /// A target needs a pixel above this (the operating point).
    pub threshold: f32,
    /// Where set, a target extends over the connected pixels above this (≤ `threshold`).
    pub grow: Option<f32>,
}

impl TargetRule {
    /// `prob > threshold`.
    pub fn plain(threshold: f32) -> Self {
        Self { threshold, grow: None }
    }

    /// A rule with hysteresis down to `grow`; refuses a `grow` above `threshold`, which would
    /// make the seeds larger than the targets they grow into.
    pub fn new(threshold: f32, grow: Option<f32>) -> Result<Self, String> {
        match grow {
            Some(g) if g > threshold => Err(format!(
                "the grow threshold {g} is above the threshold {threshold}: a target grows from its pixels \
                 above the threshold down to the grow threshold, so it must be at most {threshold} (or none)"
            )),
            _ => Ok(Self { threshold, grow }),
        }
    }

    /// The target pixels of a `w × h` probability map (row-major).
    pub fn mask(&self, prob: &[f32], w: usize, h: usize) -> Vec<bool> {
        match self.grow {
            None => self.seeds(prob),
            Some(_) => self.components(prob, w, h).labels.iter().map(|&l| l > 0).collect(),
        }
    }

    /// The targets' components: the 8-connected components of [`TargetRule::mask`], labelled
    /// as [`label_components`] labels that mask, with one labelling pass rather than two.
    pub fn components(&self, prob: &[f32], w: usize, h: usize) -> Components {
        let seeds = self.seeds(prob);
        let Some(grow) = self.grow else {
            return label_components(&seeds, w, h);
        };
        let low: Vec<bool> = prob.iter().map(|&p| p > grow).collect();
        let mut comps = label_components(&low, w, h);
        let mut seeded = vec![false; comps.count + 1];
        for (&l, &s) in comps.labels.iter().zip(&seeds) {
            seeded[l as usize] |= s;
        }
        // The kept components, renumbered 1, 2, … in their labels' order. Labels follow the
        // raster order of a component's first pixel, and a kept component's first pixel is the
        // same in the grown mask, so this is the order a labelling of that mask would give.
        let mut renumbered = vec![0u32; comps.count + 1];
        let mut count = 0;
        for (l, new) in renumbered.iter_mut().enumerate().skip(1) {
            if seeded[l] {
                count += 1;
                *new = count;
            }
        }
        for l in &mut comps.labels {
            *l = renumbered[*l as usize];
        }
        comps.count = count as usize;
        comps
    }

    /// `prob > threshold`, per pixel.
    fn seeds(&self, prob: &[f32]) -> Vec<bool> {
        prob.iter().map(|&p| p > self.threshold).collect()
    }

    /// Records the rule in a JSON object (an output row, a weights file's `info`): its
    /// `threshold` and `grow` (null for none), without the f32 → f64 binary tail (0.9, not
    /// 0.8999999761581421).
    pub fn record(&self, into: &mut serde_json::Value) {
        let round = |v: f32| (f64::from(v) * 1e6).round() / 1e6;
        into["threshold"] = serde_json::json!(round(self.threshold));
        into["grow"] = serde_json::json!(self.grow.map(round));
    }
}

impl std::fmt::Display for TargetRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.grow {
            Some(g) => write!(f, "threshold {} grown to {g}", self.threshold),
            None => write!(f, "threshold {}", self.threshold),
        }
    }
}

/// One frame's result from any segmenter (network or baseline).
#[derive(Debug, Clone)]
pub struct Detection {
    /// Columns of the frame.
    pub width: usize,
    /// Rows of the frame.
    pub height: usize,
    /// Target probability per pixel, row-major, at the frame's size.
    pub prob: Vec<f32>,
    /// The mask of the rule the detection was made with (row-major): the pixels of `targets`.
    pub target_mask: Vec<bool>,
    /// Components of the target rule's mask.
    pub targets: Vec<Target>,
    /// Targets the weights' second stage removed (`verify`); 0 without one.
    pub verifier_rejected: usize,
}

impl Detection {
    /// A `width × height` probability map and its targets: the components of `rule`'s mask.
    pub fn from_prob(width: usize, height: usize, prob: Vec<f32>, rule: TargetRule) -> Self {
        let comps = rule.components(&prob, width, height);
        let targets = targets_of(&prob, width, &comps);
        Self {
            width,
            height,
            target_mask: comps.labels.iter().map(|&l| l > 0).collect(),
            prob,
            targets,
            verifier_rejected: 0,
        }
    }

    /// The binary mask of another `rule` than the one the targets were found with (`eval
    /// --sweep` scores several rules on one probability map); `target_mask` is that one's.
    pub fn mask(&self, rule: TargetRule) -> Vec<bool> {
        rule.mask(&self.prob, self.width, self.height)
    }
}

/// A detected target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// 1-based, in raster order of the component's first pixel.
    pub id: usize,
    /// Column (x) and row (y) of the probability-weighted centroid, 0-based pixel coordinates.
    pub x: f64,
    /// Row (y) of the probability-weighted centroid.
    pub y: f64,
    /// Pixels in the component.
    pub area: usize,
    /// Inclusive bounding box: [x_min, y_min, x_max, y_max].
    pub bbox: [usize; 4],
    /// Highest probability in the component.
    pub peak: f32,
    /// The unweighted centroid (x, y) of its pixels: what the field's evaluators match
    /// against ground truth (see [`Target::blob`]). Not written to outputs.
    #[serde(skip)]
    pub pixel_centroid: (f64, f64),
}

impl Target {
    /// The target as the scorer sees it (unweighted centroid and area).
    pub fn blob(&self) -> Blob {
        Blob {
            x: self.pixel_centroid.0,
            y: self.pixel_centroid.1,
            area: self.area as u64,
        }
    }
}

/// A labelling of a binary mask into 8-connected components, in raster order of first pixel.
pub struct Components {
    /// Per pixel: 0 for background, else the 1-based component label.
    pub labels: Vec<u32>,
    /// Number of components.
    pub count: usize,
}

/// Labels the 8-connected components of `mask` (W×H, row-major) by flood fill; labels follow
/// the raster order of each component's first pixel (what the field's evaluators use).
pub fn label_components(mask: &[bool], w: usize, h: usize) -> Components {
    let mut labels = vec![0u32; w * h];
    let mut count = 0u32;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        count += 1;
        labels[start] = count;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] && labels[j] == 0 {
                        labels[j] = count;
                        stack.push(j);
                    }
                }
            }
        }
    }
    Components {
        labels,
        count: count as usize,
    }
}

/// A detected object as the field's evaluators see it: the unweighted centroid of its pixels
/// (x = column, y = row, 0-based) and its pixel count. `run` and `eval` both score these
/// (`eval::metrics::match_points`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    /// Column of the centroid.
    pub x: f64,
    /// Row of the centroid.
    pub y: f64,
    /// Pixels in the object.
    pub area: u64,
}

/// The 8-connected components of a mask as blobs, in raster order of their first pixel.
pub fn blobs(mask: &[bool], w: usize, h: usize) -> Vec<Blob> {
    let comps = label_components(mask, w, h);
    let mut out = vec![
        Blob {
            x: 0.0,
            y: 0.0,
            area: 0
        };
        comps.count
    ];
    for (i, &l) in comps.labels.iter().enumerate() {
        if l > 0 {
            let b = &mut out[l as usize - 1];
            b.x += (i % w) as f64;
            b.y += (i / w) as f64;
            b.area += 1;
        }
    }
    for b in &mut out {
        b.x /= b.area as f64;
        b.y /= b.area as f64;
    }
    out
}

/// Targets of a probability map: the components of `rule`'s mask.
pub fn find_targets(prob: &[f32], w: usize, h: usize, rule: TargetRule) -> Vec<Target> {
    targets_of(prob, w, &rule.components(prob, w, h))
}

/// The targets of the labelled components `comps` of a probability map `w` columns wide.
fn targets_of(prob: &[f32], w: usize, comps: &Components) -> Vec<Target> {
    let mut acc: Vec<(f64, f64, f64, usize, [usize; 4], f32)> =
        vec![(0.0, 0.0, 0.0, 0, [usize::MAX, usize::MAX, 0, 0], 0.0); comps.count];
    let mut plain = vec![(0f64, 0f64); comps.count];
    for (i, &l) in comps.labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (x, y, p) = (i % w, i / w, prob[i]);
        let a = &mut acc[l as usize - 1];
        a.0 += p as f64 * x as f64;
        a.1 += p as f64 * y as f64;
        a.2 += p as f64;
        a.3 += 1;
        a.4 = [a.4[0].min(x), a.4[1].min(y), a.4[2].max(x), a.4[3].max(y)];
        a.5 = a.5.max(p);
        let c = &mut plain[l as usize - 1];
        c.0 += x as f64;
        c.1 += y as f64;
    }
    acc.into_iter()
        .zip(plain)
        .enumerate()
        .map(|(i, ((sx, sy, sw, area, bbox, peak), (px, py)))| Target {
            id: i + 1,
            x: sx / sw,
            y: sy / sw,
            area,
            bbox,
            peak,
            pixel_centroid: (px / area as f64, py / area as f64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_pixels_are_one_component() {
        let mut prob = vec![0f32; 25];
        prob[0] = 0.9;
        prob[6] = 0.9; // touches (0,0) diagonally
        prob[24] = 0.6;
        let t = find_targets(&prob, 5, 5, TargetRule::plain(0.5));
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].area, 2);
        assert_eq!(t[0].bbox, [0, 0, 1, 1]);
        assert_eq!(t[1].area, 1);
        assert!((t[1].x - 4.0).abs() < 1e-12 && (t[1].y - 4.0).abs() < 1e-12);
    }

    #[test]
    fn centroid_is_probability_weighted() {
        let mut prob = vec![0f32; 9];
        prob[3] = 0.6; // (0,1)
        prob[4] = 1.0; // (1,1)
        prob[5] = 0.6; // (2,1)
        prob[1] = 0.8; // (1,0)
        let t = find_targets(&prob, 3, 3, TargetRule::plain(0.5));
        assert_eq!(t.len(), 1);
        assert!((t[0].x - 1.0).abs() < 1e-9);
        assert!((t[0].y - (0.8 * 0.0 + 2.2) / 3.0).abs() < 1e-6);
        assert_eq!(t[0].peak, 1.0);
        assert_eq!(t[0].pixel_centroid, (1.0, 0.75));
    }

    #[test]
    fn threshold_is_strict() {
        assert!(find_targets(&[0.5, 0.5], 2, 1, TargetRule::plain(0.5)).is_empty());
    }

    /// A 7×5 map: a target whose peak (0.97) sits in a halo of 0.6–0.8, a clutter blob that
    /// never exceeds 0.8, and one lone pixel of 0.96.
    fn two_blobs_and_a_point() -> Vec<f32> {
        #[rustfmt::skip]
        let prob = vec![
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.6, 0.8, 0.6, 0.0, 0.7, 0.8, 0.0,
            0.7, 0.97, 0.7, 0.0, 0.8, 0.7, 0.0,
            0.6, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.96,
        ];
        prob
    }

    #[test]
    fn hysteresis_grows_seeded_components_and_drops_unseeded_ones() {
        let prob = two_blobs_and_a_point();
        let plain = find_targets(&prob, 7, 5, TargetRule::plain(0.95));
        assert_eq!(plain.iter().map(|t| t.area).collect::<Vec<_>>(), vec![1, 1]);
        let grown = find_targets(&prob, 7, 5, TargetRule::new(0.95, Some(0.5)).unwrap());
        // The target takes its whole 3×3 halo; the clutter blob (no pixel above 0.95) stays out.
        assert_eq!(
            grown.iter().map(|t| (t.area, t.bbox)).collect::<Vec<_>>(),
            vec![(9, [0, 1, 2, 3]), (1, [6, 4, 6, 4])]
        );
        assert_eq!(grown[0].pixel_centroid, (1.0, 2.0));
        // At the grow threshold alone, the clutter is a target too.
        assert_eq!(find_targets(&prob, 7, 5, TargetRule::plain(0.5)).len(), 3);
        // Growing down to 0.75 keeps only the halo's pixels above it.
        let mask = TargetRule::new(0.95, Some(0.75)).unwrap().mask(&prob, 7, 5);
        assert_eq!(mask.iter().filter(|&&m| m).count(), 3);
        assert!(mask[8] && mask[15] && mask[34] && !mask[12]);
    }

    #[test]
    fn hysteresis_never_reports_more_targets_than_the_plain_rule() {
        // Pseudo-random maps, many thresholds: every grown component holds a plain one.
        let mut s = 12345u64;
        for _ in 0..200 {
            let prob: Vec<f32> = (0..96)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            for (t, g) in [(0.9, 0.5), (0.95, 0.7), (0.6, 0.6), (0.99, 0.1)] {
                let plain = find_targets(&prob, 12, 8, TargetRule::plain(t));
                let grown = TargetRule::new(t, Some(g)).unwrap();
                assert!(find_targets(&prob, 12, 8, grown).len() <= plain.len());
                let (pm, gm) = (TargetRule::plain(t).mask(&prob, 12, 8), grown.mask(&prob, 12, 8));
                assert!(
                    pm.iter().zip(&gm).all(|(&p, &g)| !p || g),
                    "the seeds are always target"
                );
                // One labelling pass gives exactly what labelling the grown mask gives.
                let (once, twice) = (grown.components(&prob, 12, 8), label_components(&gm, 12, 8));
                assert_eq!((once.labels, once.count), (twice.labels, twice.count));
                let det = Detection::from_prob(12, 8, prob.clone(), grown);
                assert_eq!(det.target_mask, gm);
            }
        }
    }

    #[test]
    fn a_grow_threshold_above_the_threshold_is_refused() {
        let err = TargetRule::new(0.5, Some(0.7)).unwrap_err();
        assert!(err.contains("grow threshold 0.7 is above the threshold 0.5"), "{err}");
        assert_eq!(TargetRule::new(0.7, Some(0.7)).unwrap().grow, Some(0.7));
        assert_eq!(TargetRule::new(0.7, None).unwrap(), TargetRule::plain(0.7));
    }

    #[test]
    fn the_rule_is_recorded_without_the_f32_tail() {
        let mut j = serde_json::json!({});
        TargetRule::new(0.9, Some(0.7)).unwrap().record(&mut j);
        assert_eq!(j, serde_json::json!({ "threshold": 0.9, "grow": 0.7 }));
        TargetRule::plain(0.95).record(&mut j);
        assert_eq!(j["grow"], serde_json::Value::Null);
    }
}
