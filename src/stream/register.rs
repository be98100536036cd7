//! Scene registration between consecutive frames: the translation that best aligns them.
//!
//! Static-clutter rejection (`postprocess::StaticClutter`) needs it on panning cameras: a warm
//! point of the ground carried across the image by the pan is still a fixed point of the scene,
//! and only its motion relative to the scene tells it from an aircraft (DAUB sequence 5 in
//! models/README.md). A translation is all we estimate: over a few frames a pan or tilt of a
//! narrow-field IR camera moves the image almost rigidly, and when it does not (zoom, rotation,
//! a large parallax) the residual stays high and the scene simply does not count as still.
//!
//! The search is exhaustive over integer shifts (a few hundred mean absolute differences on a
//! 2×-reduced frame, then the 3×3 neighbourhood at full resolution), then refined to a fraction
//! of a pixel by a parabola through the cost at the best shift and its neighbours. Exhaustive
//! search costs O(shifts × pixels) but cannot be misled by clutter into a local minimum the way
//! gradient methods can; phase correlation would need an FFT crate for a job this small.

use crate::image_io::Frame;
use std::collections::VecDeque;

/// The translation from one frame to the next: a scene point at (x, y) in the earlier frame is
/// at (x + dx, y + dy) in the later one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Horizontal shift, px (fractional).
    pub dx: f64,
    /// Vertical shift, px (fractional).
    pub dy: f64,
    /// Mean absolute difference of the frames aligned by the shift (intensity units): what a
    /// translation leaves unexplained.
    pub residual: f32,
}

/// Samples per cost evaluation we aim for: enough to be robust to noise and small movers,
/// few enough that a 17×17 search on a 1280×1024 frame stays in the milliseconds.
const SAMPLES_PER_COST: usize = 16_384;

/// One plane: `width`·`height` values, row-major.
struct Plane<'a> {
    data: &'a [f32],
    width: usize,
    height: usize,
}

/// A stream's scene motion, frame to frame: it keeps the previous frame with its 2×-reduced
/// copy, so that each frame is reduced once however many shifts it takes part in.
#[derive(Debug, Clone)]
pub struct SceneTracker {
    max_shift: usize,
    previous: Option<Pyramid>,
}

/// A plane and its 2×-reduced copy.
#[derive(Debug, Clone)]
struct Pyramid {
    full: Vec<f32>,
    width: usize,
    height: usize,
    half: (Vec<f32>, usize, usize),
}

impl Pyramid {
    fn new(full: Vec<f32>, width: usize, height: usize) -> Self {
        let half = reduce(&Plane {
            data: &full,
            width,
            height,
        });
        Self {
            full,
            width,
            height,
            half,
        }
    }

    fn planes(&self) -> (Plane<'_>, Plane<'_>) {
        (
            Plane {
                data: &self.full,
                width: self.width,
                height: self.height,
            },
            Plane {
                data: &self.half.0,
                width: self.half.1,
                height: self.half.2,
            },
        )
    }
}

impl SceneTracker {
    /// Follows shifts of at most `max_shift` px per frame.
    pub fn new(max_shift: usize) -> Self {
        Self {
            max_shift,
            previous: None,
        }
    }

    /// The shift from the previous frame to this `width`·`height` plane; `None` on the first
    /// frame and on the first of a new size.
    pub fn step(&mut self, plane: &[f32], width: usize, height: usize) -> Option<Shift> {
        debug_assert_eq!(plane.len(), width * height, "registration: plane size");
        let current = Pyramid::new(plane.to_vec(), width, height);
        let previous = self.previous.replace(current)?;
        let current = self.previous.as_ref()?;
        if (previous.width, previous.height) != (width, height) {
            return None;
        }
        Some(shift_between(previous.planes(), current.planes(), self.max_shift))
    }
}

/// The last few frames' first planes, each at the scene's accumulated shift, so that the frame
/// K back can be aligned with the current one: what the motion gate (`stream::motion`) and the
/// temporal input of a motion model (`src/temporal.rs`) both compare with. A new frame size
/// restarts it; a frame whose shift was not measured is taken to be where the previous one was.
#[derive(Debug, Clone)]
pub struct SceneHistory {
    lag: usize,
    /// Oldest first: a plane and the scene's accumulated shift (x, y) at it.
    frames: VecDeque<(Vec<f32>, f64, f64)>,
    size: (usize, usize),
}

/// The current frame and the one K back, with the scene's shift between them.
pub struct Lagged<'a> {
    /// The current frame's first plane.
    pub current: &'a [f32],
    /// The first plane of the frame K back.
    pub old: &'a [f32],
    /// Frame size (width, height).
    pub size: (usize, usize),
    /// Where a scene point of the old frame is in the current one, relative: (x, y) px.
    pub shift: (f64, f64),
}

impl SceneHistory {
    /// Keeps the current frame and the `lag` before it.
    pub fn new(lag: usize) -> Self {
        Self {
            lag,
            frames: VecDeque::with_capacity(lag + 1),
            size: (0, 0),
        }
    }

    /// Adds `frame`'s first plane; `step` is the scene's shift since the previous frame.
    pub fn push(&mut self, frame: &Frame, step: Option<Shift>) {
        if (frame.width, frame.height) != self.size {
            self.frames.clear();
            self.size = (frame.width, frame.height);
        }
        let (sx, sy) = match (self.frames.back(), step) {
            (Some((_, px, py)), Some(s)) => (px + s.dx, py + s.dy),
            (Some((_, px, py)), None) => (*px, *py),
            (None, _) => (0.0, 0.0),
        };
        self.frames.push_back((frame.plane(0).to_vec(), sx, sy));
        if self.frames.len() > self.lag + 1 {
            self.frames.pop_front();
        }
    }

    /// The current frame and the one `lag` back, once the history holds both.
    pub fn lagged(&self) -> Option<Lagged<'_>> {
        if self.frames.len() <= self.lag {
            return None;
        }
        let (old, ox, oy) = &self.frames[0];
        let (current, cx, cy) = self.frames.back()?;
        Some(Lagged {
            current,
            old,
            size: self.size,
            shift: (cx - ox, cy - oy),
        })
    }
}

/// The shift (at most `max_shift` px each way) that best aligns `cur` with `prev`, each a
/// plane with its reduced copy. `max_shift` is cut to a quarter
/// of the smaller side so that any two candidate alignments still share more than a quarter
/// of the frame.
fn shift_between(prev: (Plane, Plane), cur: (Plane, Plane), max_shift: usize) -> Shift {
    let max_shift = max_shift.min(prev.0.width.min(prev.0.height) / 4) as i64;
    let full = (prev.0, cur.0);
    let half = (prev.1, cur.1);
    // Coarse: every shift on the reduced planes (half the range, in reduced pixels).
    let coarse_range = (max_shift + 1) / 2;
    let (mut bx, mut by) = (0, 0);
    let mut best = f32::INFINITY;
    for dy in -coarse_range..=coarse_range {
        for dx in -coarse_range..=coarse_range {
            let c = cost(&half.0, &half.1, dx as f64, dy as f64);
            if c < best {
                (best, bx, by) = (c, dx, dy);
            }
        }
    }
    // Fine: the 3×3 full-resolution shifts around the coarse one.
    let (cx, cy) = (2 * bx, 2 * by);
    let mut costs = [[f32::INFINITY; 3]; 3];
    let (mut fx, mut fy, mut fine_best) = (cx, cy, f32::INFINITY);
    for (j, dy) in (cy - 1..=cy + 1).enumerate() {
        for (i, dx) in (cx - 1..=cx + 1).enumerate() {
            if dx.abs() > max_shift || dy.abs() > max_shift {
                continue;
            }
            costs[j][i] = cost(&full.0, &full.1, dx as f64, dy as f64);
            if costs[j][i] < fine_best {
                (fine_best, fx, fy) = (costs[j][i], dx, dy);
            }
        }
    }
    // Sub-pixel: a parabola through the best cost and its two neighbours on each axis (when the
    // best is on the edge of the 3×3 window, a neighbour is evaluated now).
    let at = |dx: i64, dy: i64| -> f32 {
        let (i, j) = (dx - (cx - 1), dy - (cy - 1));
        if (0..3).contains(&i) && (0..3).contains(&j) {
            costs[j as usize][i as usize]
        } else if dx.abs() > max_shift || dy.abs() > max_shift {
            f32::INFINITY
        } else {
            cost(&full.0, &full.1, dx as f64, dy as f64)
        }
    };
    let sx = vertex(at(fx - 1, fy), fine_best, at(fx + 1, fy));
    let sy = vertex(at(fx, fy - 1), fine_best, at(fx, fy + 1));
    let (dx, dy) = (fx as f64 + sx, fy as f64 + sy);
    // The residual at the fractional shift: at the integer one, a pan of half a pixel would
    // leave its interpolation error (about twice the noise floor on DAUB) as "unexplained".
    Shift {
        dx,
        dy,
        residual: cost(&full.0, &full.1, dx, dy).min(fine_best),
    }
}

/// Mean absolute difference between `prev(x, y)` and `cur(x + dx, y + dy)`, `cur` sampled
/// bilinearly at fractional shifts, over the pixels whose four neighbours there all lie inside
/// `cur`, on a regular grid of about [`SAMPLES_PER_COST`] points.
fn cost(prev: &Plane, cur: &Plane, dx: f64, dy: f64) -> f32 {
    let (w, h) = (prev.width as i64, prev.height as i64);
    let (ix, iy) = (dx.floor() as i64, dy.floor() as i64);
    let (fx, fy) = ((dx - dx.floor()) as f32, (dy - dy.floor()) as f32);
    // x + ix and x + ix + 1 must both be columns of `cur` (rows alike).
    let (x0, x1) = ((-ix).max(0), (w - ix - 1).min(w));
    let (y0, y1) = ((-iy).max(0), (h - iy - 1).min(h));
    if x1 <= x0 || y1 <= y0 {
        return f32::INFINITY;
    }
    let area = ((x1 - x0) * (y1 - y0)) as usize;
    let step = ((area / SAMPLES_PER_COST) as f64).sqrt().floor().max(1.0) as usize;
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in (y0..y1).step_by(step) {
        let p = &prev.data[(y * w) as usize..][..w as usize];
        let c0 = &cur.data[((y + iy) * w) as usize..][..w as usize];
        let c1 = &cur.data[((y + iy + 1) * w) as usize..][..w as usize];
        for x in (x0..x1).step_by(step) {
            let c = (x + ix) as usize;
            let top = c0[c] + fx * (c0[c + 1] - c0[c]);
            let bottom = c1[c] + fx * (c1[c + 1] - c1[c]);
            sum += f64::from((p[x as usize] - (top + fy * (bottom - top))).abs());
            n += 1;
        }
    }
    (sum / n as f64) as f32
}

/// The `width`·`height` plane sampled bilinearly at (x, y), clamped to its edges.
pub fn sample(plane: &[f32], width: usize, height: usize, x: f64, y: f64) -> f32 {
    let x = x.clamp(0.0, (width - 1) as f64);
    let y = y.clamp(0.0, (height - 1) as f64);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
    let top = plane[y0 * width + x0] + fx * (plane[y0 * width + x1] - plane[y0 * width + x0]);
    let bottom = plane[y1 * width + x0] + fx * (plane[y1 * width + x1] - plane[y1 * width + x0]);
    top + fy * (bottom - top)
}

/// Offset in (−0.5, 0.5) of the minimum of the parabola through (−1, a), (0, b), (1, c); 0 when
/// b is not a strict minimum of a finite triple (a flat or one-sided valley).
fn vertex(a: f32, b: f32, c: f32) -> f64 {
    let curvature = f64::from(a) - 2.0 * f64::from(b) + f64::from(c);
    if !(a.is_finite() && c.is_finite()) || curvature <= 0.0 {
        return 0.0;
    }
    (0.5 * (f64::from(a) - f64::from(c)) / curvature).clamp(-0.49, 0.49)
}

/// The plane averaged over 2×2 blocks (an odd last row or column is dropped).
fn reduce(p: &Plane) -> (Vec<f32>, usize, usize) {
    let (w, h) = (p.width / 2, p.height / 2);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let r0 = &p.data[2 * y * p.width..][..p.width];
        let r1 = &p.data[(2 * y + 1) * p.width..][..p.width];
        for x in 0..w {
            out.push(0.25 * (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]));
        }
    }
    (out, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth, textured scene (sums of sines) sampled at (x − ox, y − oy): the scene moved by
    /// (ox, oy) px, fractions included.
    fn scene(w: usize, h: usize, ox: f64, oy: f64) -> Vec<f32> {
        let mut v = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (u, t) = (x as f64 - ox, y as f64 - oy);
                let s = (u * 0.21).sin()
                    + (t * 0.17).cos()
                    + (0.05 * u + 0.11 * t).sin() * 0.8
                    + (0.3 * u - 0.07 * t).sin() * 0.4;
                v.push((0.5 + 0.12 * s) as f32);
            }
        }
        v
    }

    /// The shift a tracker finds from `prev` to `cur` (two frames of a stream).
    fn scene_shift(prev: &[f32], cur: &[f32], w: usize, h: usize, max_shift: usize) -> Shift {
        let mut tracker = SceneTracker::new(max_shift);
        assert!(tracker.step(prev, w, h).is_none(), "no shift on the first frame");
        tracker
            .step(cur, w, h)
            .expect("a shift on the second frame of one size")
    }

    #[test]
    fn finds_integer_and_fractional_pans() {
        let (w, h) = (160, 128);
        let prev = scene(w, h, 0.0, 0.0);
        for &(ox, oy) in &[(0.0, 0.0), (3.0, -2.0), (-7.0, 5.0), (2.4, 0.7), (-1.6, -3.3)] {
            let s = scene_shift(&prev, &scene(w, h, ox, oy), w, h, 8);
            assert!(
                (s.dx - ox).abs() < 0.2 && (s.dy - oy).abs() < 0.2,
                "moved ({ox}, {oy}), found {s:?}"
            );
            // Measured at the fractional shift, a pure translation leaves only the bilinear
            // interpolation's error (at the nearest integer shift, 0.008 or more here).
            assert!(s.residual < 0.004, "a pure translation leaves little: {s:?}");
        }
    }

    #[test]
    fn a_change_no_translation_explains_leaves_a_large_residual() {
        let (w, h) = (96, 64);
        let prev = scene(w, h, 0.0, 0.0);
        // Another scene altogether (a cut, a gain jump): nothing aligns.
        let other: Vec<f32> = scene(w, h, 0.0, 0.0).iter().map(|v| 1.0 - v * 0.5).collect();
        assert!(scene_shift(&prev, &other, w, h, 8).residual > 0.1);
    }

    #[test]
    fn the_search_stays_inside_a_quarter_of_a_small_frame() {
        // 8×8 with a shift of 100 asked: cut to 2, and the result stays within it.
        let prev = scene(8, 8, 0.0, 0.0);
        let s = scene_shift(&prev, &scene(8, 8, 1.0, 0.0), 8, 8, 100);
        assert!(s.dx.abs() <= 2.5 && s.dy.abs() <= 2.5, "{s:?}");
        assert!(s.residual.is_finite());
    }
}
