//! Masks derived from the annotations users have: target centres (`centroids.csv`) or boxes
//! (`boxes.csv`). One mask per target, by a local adaptive threshold connected to the point.
//!
//! The rule, for a point annotation at (x, y):
//! 1. The seed is the brightest pixel within `seed_radius` px of the point (annotations are
//!    often a pixel or two off).
//! 2. The local background is a plane fitted (least squares) to the ring of pixels whose
//!    Chebyshev distance from the point is in (`inner`, `window`], so a clutter gradient across
//!    the window (a horizon, a cloud edge) is not mistaken for the target; its noise σ is
//!    1.4826 × the median absolute residual of the ring (at least half an 8-bit step).
//! 3. A target whose seed is not `min_snr`·σ above the background is skipped as not visible.
//! 4. The mask is the 8-connected region of pixels brighter than
//!    `background(x, y) + max(k_sigma·σ, peak_fraction·(peak − background(seed)))` that contains the seed,
//!    grown within the window. Half of the peak contrast follows the optics' blur (the
//!    half-maximum extent of a point target); `k_sigma`·σ keeps noise out on dim targets.
//! 5. A region that reaches the window's edge (the target touches bright clutter, or is larger
//!    than the window) or exceeds `max_area` is skipped as unbounded.
//!
//! For a box, the window is the box grown by `inner` pixels, the ring is what lies outside the
//! box, the seed is the brightest pixel in the box and the region stays inside it.
//!
//! Where it fails (and skips, or errs): cold targets (darker than their background) are not
//! found; two targets closer than the window are measured against each other's light; a
//! target on a bright edge either bleeds (skipped) or is cut at the threshold; targets dimmer
//! than `min_snr`·σ are skipped.

use crate::detect::label_components;
use crate::robust::sigma_from_deviations;
use serde::{Deserialize, Serialize};

/// The rule's parameters (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelRule {
    /// Half-side of the square window around a point, in pixels.
    pub window: usize,
    /// Pixels nearer than this (Chebyshev) to the point are not background; for boxes, the
    /// margin of background around the box.
    pub inner: usize,
    /// The seed is searched within this many pixels of the point.
    pub seed_radius: usize,
    /// Threshold floor, in background σ above the background.
    pub k_sigma: f32,
    /// Threshold as a fraction of the seed's contrast above the background.
    pub peak_fraction: f32,
    /// A seed less than this many σ above the background is not a visible target.
    pub min_snr: f32,
    /// The largest mask, in pixels, for a point annotation.
    pub max_area: usize,
}

impl Default for LabelRule {
    fn default() -> Self {
        Self {
            window: 8,
            inner: 4,
            seed_radius: 2,
            k_sigma: 3.0,
            peak_fraction: 0.5,
            min_snr: 3.0,
            max_area: 120,
        }
    }
}

/// What a target was annotated with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Annotation {
    /// Its centre (x = column, y = row).
    Point(f64, f64),
    /// Its inclusive bounds `[x0, y0, x1, y1]`.
    Box([f64; 4]),
}

/// Derives one target's mask in a `w`×`h` gray frame (intensities in [0, 1]): the pixel indices
/// of the region, or why none could be derived.
pub fn derive_mask(img: &[f32], w: usize, h: usize, ann: Annotation, rule: &LabelRule) -> Result<Vec<usize>, String> {
    let window = Window::new(ann, w, h, rule)?;
    let ring: Vec<(f64, f64, f32)> = window
        .pixels()
        .filter(|&(x, y)| window.is_ring(x, y))
        .map(|(x, y)| (x as f64, y as f64, img[y * w + x]))
        .collect();
    if ring.len() < 8 {
        return Err("too close to the frame's edge to measure its background".into());
    }
    let plane = Plane::fit(&ring);
    let mut residuals: Vec<f32> = ring.iter().map(|&(x, y, v)| (v - plane.at(x, y)).abs()).collect();
    let sigma = sigma_from_deviations(&mut residuals).max(0.5 / 255.0);
    let seed = window
        .pixels()
        .filter(|&(x, y)| window.may_seed(x, y))
        .max_by(|a, b| {
            let ra = img[a.1 * w + a.0] - plane.at(a.0 as f64, a.1 as f64);
            let rb = img[b.1 * w + b.0] - plane.at(b.0 as f64, b.1 as f64);
            ra.total_cmp(&rb)
        })
        .ok_or("no pixel to start from")?;
    let contrast = img[seed.1 * w + seed.0] - plane.at(seed.0 as f64, seed.1 as f64);
    if contrast < rule.min_snr * sigma {
        return Err(format!(
            "not visible: {:.1} σ above its background (needs {})",
            contrast / sigma,
            rule.min_snr
        ));
    }
    let margin = (rule.k_sigma * sigma).max(rule.peak_fraction * contrast);
    // Threshold inside the window, then keep the component holding the seed.
    let (ww, wh) = (window.x1 - window.x0 + 1, window.y1 - window.y0 + 1);
    let above: Vec<bool> = (0..ww * wh)
        .map(|i| {
            let (x, y) = (window.x0 + i % ww, window.y0 + i / ww);
            window.may_grow(x, y) && img[y * w + x] > plane.at(x as f64, y as f64) + margin
        })
        .collect();
    let comps = label_components(&above, ww, wh);
    let label = comps.labels[(seed.1 - window.y0) * ww + seed.0 - window.x0];
    let region: Vec<(usize, usize)> = (0..ww * wh)
        .filter(|&i| comps.labels[i] == label)
        .map(|i| (window.x0 + i % ww, window.y0 + i / ww))
        .collect();
    if let Annotation::Point(..) = ann {
        if region.iter().any(|&(x, y)| window.on_edge(x, y)) {
            return Err("unbounded: the region reaches the window's edge (bright clutter around it?)".into());
        }
        if region.len() > rule.max_area {
            return Err(format!("too large: {} px (limit {})", region.len(), rule.max_area));
        }
    }
    Ok(region.into_iter().map(|(x, y)| y * w + x).collect())
}

/// One frame's derived mask (the union of its targets' masks) and the targets that were skipped,
/// by index, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameLabels {
    /// `w`×`h`, true on target pixels.
    pub mask: Vec<bool>,
    /// Targets whose mask could not be derived.
    pub skipped: Vec<(usize, String)>,
    /// Pixel count of each derived target mask.
    pub areas: Vec<usize>,
}

/// Derives every annotated target of a frame.
pub fn derive_frame(img: &[f32], w: usize, h: usize, anns: &[Annotation], rule: &LabelRule) -> FrameLabels {
    let mut mask = vec![false; w * h];
    let (mut skipped, mut areas) = (Vec::new(), Vec::new());
    for (k, &ann) in anns.iter().enumerate() {
        match derive_mask(img, w, h, ann, rule) {
            Ok(px) => {
                areas.push(px.len());
                px.into_iter().for_each(|i| mask[i] = true);
            }
            Err(why) => skipped.push((k, why)),
        }
    }
    FrameLabels { mask, skipped, areas }
}

/// The part of the frame an annotation is measured in.
struct Window {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    /// The annotation's own area: the point's `inner` square, or the box.
    core: (f64, f64, f64, f64),
    seed_core: (f64, f64, f64, f64),
    is_box: bool,
}

impl Window {
    fn new(ann: Annotation, w: usize, h: usize, rule: &LabelRule) -> Result<Self, String> {
        let (core, seed_core, margin, is_box) = match ann {
            Annotation::Point(x, y) => {
                let (i, s) = (rule.inner as f64, rule.seed_radius as f64);
                let (px, py) = (x.round(), y.round());
                (
                    (px - i, py - i, px + i, py + i),
                    (px - s, py - s, px + s, py + s),
                    rule.window - rule.inner,
                    false,
                )
            }
            Annotation::Box(b) => {
                let b = (b[0].floor(), b[1].floor(), b[2].ceil(), b[3].ceil());
                (b, b, rule.inner, true)
            }
        };
        let (cx, cy) = ((core.0 + core.2) / 2.0, (core.1 + core.3) / 2.0);
        if cx < 0.0 || cy < 0.0 || cx >= w as f64 || cy >= h as f64 {
            return Err(format!("annotation at ({cx}, {cy}) lies outside the {w}×{h} frame"));
        }
        let m = margin as f64;
        let clamp = |v: f64, n: usize| v.clamp(0.0, n as f64 - 1.0) as usize;
        Ok(Self {
            x0: clamp(core.0 - m, w),
            y0: clamp(core.1 - m, h),
            x1: clamp(core.2 + m, w),
            y1: clamp(core.3 + m, h),
            core,
            seed_core,
            is_box,
        })
    }

    fn pixels(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (self.y0..=self.y1).flat_map(move |y| (self.x0..=self.x1).map(move |x| (x, y)))
    }

    fn inside(r: (f64, f64, f64, f64), x: usize, y: usize) -> bool {
        let (x, y) = (x as f64, y as f64);
        x >= r.0 && x <= r.2 && y >= r.1 && y <= r.3
    }

    fn is_ring(&self, x: usize, y: usize) -> bool {
        !Self::inside(self.core, x, y)
    }

    fn may_seed(&self, x: usize, y: usize) -> bool {
        Self::inside(self.seed_core, x, y)
    }

    fn may_grow(&self, x: usize, y: usize) -> bool {
        !self.is_box || Self::inside(self.core, x, y)
    }

    fn on_edge(&self, x: usize, y: usize) -> bool {
        x == self.x0 || y == self.y0 || x == self.x1 || y == self.y1
    }
}

/// A background plane v = a + b·x + c·y.
struct Plane {
    a: f64,
    b: f64,
    c: f64,
}

impl Plane {
    /// The least-squares plane through `pts` (x, y, value), centred for conditioning; a flat
    /// plane at the mean when the points are degenerate (all in one row or column).
    fn fit(pts: &[(f64, f64, f32)]) -> Self {
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let mv = pts.iter().map(|p| p.2 as f64).sum::<f64>() / n;
        let (mut sxx, mut syy, mut sxy, mut sxv, mut syv) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, y, v) in pts {
            let (dx, dy, dv) = (x - mx, y - my, v as f64 - mv);
            sxx += dx * dx;
            syy += dy * dy;
            sxy += dx * dy;
            sxv += dx * dv;
            syv += dy * dv;
        }
        let det = sxx * syy - sxy * sxy;
        let (b, c) = if det.abs() < 1e-9 {
            (0.0, 0.0)
        } else {
            ((sxv * syy - syv * sxy) / det, (syv * sxx - sxv * sxy) / det)
        };
        Self {
            a: mv - b * mx - c * my,
            b,
            c,
        }
    }

    fn at(&self, x: f64, y: f64) -> f32 {
        (self.a + self.b * x + self.c * y) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spot(w: usize, h: usize, cx: f64, cy: f64, sigma: f64, amp: f32, bg: f32) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                bg + amp * (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * sigma * sigma)).exp() as f32
            })
            .collect()
    }

    #[test]
    fn a_point_target_gets_its_half_maximum_region() {
        let img = spot(32, 32, 16.0, 15.0, 1.0, 0.4, 0.2);
        let m = derive_mask(&img, 32, 32, Annotation::Point(17.0, 15.0), &LabelRule::default()).unwrap();
        // exp(-d²/2) ≥ 0.5 ⇔ d² ≤ 1.386: the centre and its 4 neighbours.
        let mut m = m;
        m.sort();
        assert_eq!(
            m,
            vec![14 * 32 + 16, 15 * 32 + 15, 15 * 32 + 16, 15 * 32 + 17, 16 * 32 + 16]
        );
    }

    #[test]
    fn invisible_unbounded_and_outside_annotations_are_refused() {
        let flat = vec![0.3f32; 32 * 32];
        let rule = LabelRule::default();
        assert!(derive_mask(&flat, 32, 32, Annotation::Point(16.0, 16.0), &rule)
            .unwrap_err()
            .contains("not visible"));
        let mut edge = flat.clone();
        for y in 0..32 {
            for x in 10..32 {
                edge[y * 32 + x] = 0.9; // a bright region wider than the window
            }
        }
        assert!(derive_mask(&edge, 32, 32, Annotation::Point(16.0, 16.0), &rule).is_err());
        assert!(derive_mask(&flat, 32, 32, Annotation::Point(40.0, 3.0), &rule)
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn a_box_bounds_its_region() {
        let img = spot(40, 40, 20.0, 20.0, 3.0, 0.5, 0.1);
        let m = derive_mask(
            &img,
            40,
            40,
            Annotation::Box([18.0, 18.0, 22.0, 22.0]),
            &LabelRule::default(),
        )
        .unwrap();
        assert!(m
            .iter()
            .all(|&i| (18..=22).contains(&(i % 40)) && (18..=22).contains(&(i / 40))));
        assert!(m.len() >= 9, "{}", m.len());
    }
}
