//! The motion gate: a detection is a target only if it is new where it stands in the scene.
//!
//! A point of the ground as small and as warm as an aircraft looks the same in one frame
//! (DAUB sequence 5 in models/README.md); what differs is that the ground point was already
//! at the same place of the scene K frames ago, carried there by the camera's pan, while the
//! aircraft was not. The gate aligns the frame K back with the current one by the scene's
//! accumulated shift (`register::SceneTracker`, frame to frame) and asks how much of each
//! detection's contrast is new: `change = (I(p) − o) / (I(p) − b)` with p the detection's
//! brightest pixel, b its local background and o the brightest value of the old frame around
//! where p's scene point was. It needs no track history, so it judges every detection from
//! the K-th frame on, unlike `postprocess::StaticClutter`, which needs N frames of a track.
//!
//! Where it fails: a target that holds still against the scene for K frames (a hovering
//! aircraft, one the camera tracks exactly) or one slower than its own size over K frames
//! (an extended target crawling) reads as old and is rejected; a bad registration only makes
//! old points look new, so it costs rejections, not targets. Detections it cannot judge (the
//! first K frames, a contrast within 3 noise σ of the background) are kept.

use super::register;
use crate::detect::Target;
use crate::image_io::Frame;
use crate::limits::{MAX_MOTION_GATE, MAX_STATIC_REGISTER};
use crate::robust::{median, sigma_from_deviations};
use anyhow::{bail, Result};

/// How many local noise σ a detection's contrast must exceed to be judged at all: below it,
/// the change is a ratio of noise.
const JUDGED_ABOVE_SIGMA: f32 = 3.0;
/// Extra pixels between the detection's box and the ring its background is measured on, so
/// that the target's own blur stays out of it.
const RING_MARGIN: i64 = 4;

/// Rejects detections whose contrast was already at their place in the scene K frames ago.
/// The scene's shift frame to frame is measured by the caller (one `register::SceneTracker`
/// per stream, shared with the other filters that follow pans) and handed to [`Self::filter`].
#[derive(Debug, Clone)]
pub struct MotionGate {
    frames: usize,
    min_change: f32,
    register: usize,
    /// The current frame and the K before it, at the scene's accumulated shifts.
    history: register::SceneHistory,
    /// Detections rejected as old so far.
    pub rejected: u64,
    /// Detections judged (not kept for want of history or contrast) so far.
    pub judged: u64,
}

impl MotionGate {
    /// Compares each frame with the one `frames` back; a detection is kept when at least
    /// `min_change` of its contrast is new. `register` is the largest scene shift per frame
    /// followed, px (0: a fixed camera, compared pixel for pixel).
    pub fn new(frames: usize, min_change: f32, register: usize) -> Result<Self> {
        if frames == 0 || frames > MAX_MOTION_GATE {
            bail!("--motion-gate {frames}: compare with 1 to {MAX_MOTION_GATE} frames back");
        }
        if !min_change.is_finite() || !(0.0..=1.0).contains(&min_change) {
            bail!("--motion-min {min_change}: a share of the contrast, from 0 to 1");
        }
        if register > MAX_STATIC_REGISTER {
            bail!("--motion-register {register}: at most {MAX_STATIC_REGISTER} px per frame");
        }
        Ok(Self {
            frames,
            min_change,
            register,
            history: register::SceneHistory::new(frames),
            rejected: 0,
            judged: 0,
        })
    }

    /// The largest scene shift per frame it follows, px (0: a fixed camera); the caller's
    /// tracker must search at least this far.
    pub fn register(&self) -> usize {
        self.register
    }

    /// The targets of `frame` that are new against the scene (all of them while the gate has
    /// fewer than K earlier frames of this size). `step` is the scene's shift since the
    /// previous frame (`None`: not measured or not explained); ignored for a fixed camera.
    pub fn filter(&mut self, frame: &Frame, step: Option<register::Shift>, targets: Vec<Target>) -> Vec<Target> {
        self.history.push(frame, step.filter(|_| self.register > 0));
        let Some(lagged) = self.history.lagged() else {
            return targets;
        };
        let (w, h) = lagged.size;
        let (cur, old, shift) = (lagged.current, lagged.old, lagged.shift);
        let mut kept = Vec::with_capacity(targets.len());
        for t in targets {
            match change(cur, old, w, h, &t, shift) {
                Some(c) if c < self.min_change => {
                    self.judged += 1;
                    self.rejected += 1;
                }
                Some(_) => {
                    self.judged += 1;
                    kept.push(t);
                }
                None => kept.push(t),
            }
        }
        kept
    }
}

impl std::fmt::Display for MotionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "motion gate {} frames, min {}, register {} px",
            self.frames, self.min_change, self.register
        )
    }
}

/// The share of the target's contrast in `cur` that is new against `old` (the same scene
/// `shift` px earlier); `None` when the contrast is within noise of the background.
fn change(cur: &[f32], old: &[f32], w: usize, h: usize, t: &Target, shift: (f64, f64)) -> Option<f32> {
    let at = |x: i64, y: i64| cur[y.clamp(0, h as i64 - 1) as usize * w + x.clamp(0, w as i64 - 1) as usize];
    let [x0, y0, x1, y1] = t.bbox.map(|v| v as i64);
    let mut p = (x0, y0);
    for y in y0 - 1..=y1 + 1 {
        for x in x0 - 1..=x1 + 1 {
            if at(x, y) > at(p.0, p.1) {
                p = (x, y);
            }
        }
    }
    let peak = at(p.0, p.1);
    let reach = (x1 - x0).max(y1 - y0) / 2 + RING_MARGIN;
    let mut ring: Vec<f32> = Vec::new();
    for y in p.1 - reach - 1..=p.1 + reach + 1 {
        for x in p.0 - reach - 1..=p.0 + reach + 1 {
            if (x - p.0).abs().max((y - p.1).abs()) >= reach {
                ring.push(at(x, y));
            }
        }
    }
    let background = median(&mut ring);
    let mut spread: Vec<f32> = ring.iter().map(|v| (v - background).abs()).collect();
    let sigma = sigma_from_deviations(&mut spread);
    let contrast = peak - background;
    if contrast <= JUDGED_ABOVE_SIGMA * sigma || contrast <= 0.0 {
        return None;
    }
    let mut before = f32::MIN;
    for j in -1..=1 {
        for i in -1..=1 {
            let (x, y) = (p.0 as f64 - shift.0 + i as f64, p.1 as f64 - shift.1 + j as f64);
            before = before.max(register::sample(old, w, h, x, y));
        }
    }
    Some((peak - before) / contrast)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-pixel detection at (x, y).
    fn target(x: usize, y: usize) -> Target {
        Target {
            id: 1,
            x: x as f64,
            y: y as f64,
            area: 1,
            bbox: [x, y, x, y],
            peak: 1.0,
            pixel_centroid: (x as f64, y as f64),
        }
    }

    /// A 64×48 frame: background 0.2 with a deterministic ±`noise` pattern, 0.9 at `hot`.
    fn frame(hot: &[(usize, usize)], noise: f32) -> Frame {
        let (w, h) = (64, 48);
        let mut data: Vec<f32> = (0..w * h)
            .map(|i| 0.2 + noise * (((i * 7919) % 13) as f32 / 6.0 - 1.0))
            .collect();
        for &(x, y) in hot {
            data[y * w + x] = 0.9;
        }
        Frame::new(w, h, 1, data).unwrap()
    }

    #[test]
    fn a_fixed_point_is_rejected_from_the_kth_frame_and_a_mover_kept() {
        let mut gate = MotionGate::new(2, 0.5, 0).unwrap();
        for i in 0..6 {
            let mover = (10 + 3 * i, 30);
            let kept = gate.filter(
                &frame(&[(40, 10), mover], 0.01),
                None,
                vec![target(40, 10), target(mover.0, mover.1)],
            );
            let xs: Vec<f64> = kept.iter().map(|t| t.x).collect();
            if i < 2 {
                assert_eq!(xs, [40.0, mover.0 as f64], "frame {i}: no frame 2 back yet, all kept");
            } else {
                assert_eq!(xs, [mover.0 as f64], "frame {i}: the fixed point is old");
            }
        }
        assert_eq!((gate.rejected, gate.judged), (4, 8));
    }

    #[test]
    fn a_point_carried_by_a_pan_is_old_once_the_pan_is_followed() {
        // The scene (a smooth texture and a hot point fixed in it) moves 1 px right per frame.
        let scene = |i: usize| {
            let (w, h) = (64, 48);
            let mut data: Vec<f32> = (0..w * h)
                .map(|k| {
                    let (x, y) = ((k % w) as f32 - i as f32, (k / w) as f32);
                    0.4 + 0.1 * (0.3 * x).sin() * (0.2 * y).cos()
                })
                .collect();
            data[20 * w + 30 + i] = 0.95;
            Frame::new(w, h, 1, data).unwrap()
        };
        let mut fixed = MotionGate::new(3, 0.5, 0).unwrap();
        let mut following = MotionGate::new(3, 0.5, 4).unwrap();
        let mut tracker = register::SceneTracker::new(following.register());
        let (mut kept_fixed, mut kept_following) = (0, 0);
        for i in 0..8 {
            let f = scene(i);
            let step = tracker.step(f.plane(0), f.width, f.height);
            // A fixed-camera gate ignores the step it is given.
            kept_fixed += fixed.filter(&f, step, vec![target(30 + i, 20)]).len();
            kept_following += following.filter(&f, step, vec![target(30 + i, 20)]).len();
        }
        // A fixed camera sees the point move 3 px in 3 frames: new each time, all 8 kept. The
        // registered gate sees it where the scene was: old in the 5 frames it can judge.
        assert_eq!((kept_fixed, fixed.rejected), (8, 0));
        assert_eq!((kept_following, following.rejected), (3, 5));
    }

    #[test]
    fn a_detection_within_noise_of_its_background_is_kept_unjudged() {
        let mut gate = MotionGate::new(1, 0.5, 0).unwrap();
        let mut noisy = frame(&[], 0.05);
        noisy.data[10 * 64 + 40] = 0.26; // 0.06 over the background: within 3σ of its noise
        for _ in 0..3 {
            assert_eq!(gate.filter(&noisy, None, vec![target(40, 10)]).len(), 1);
        }
        assert_eq!((gate.rejected, gate.judged), (0, 0));
    }

    #[test]
    fn a_new_frame_size_restarts_the_history() {
        let mut gate = MotionGate::new(1, 0.5, 0).unwrap();
        gate.filter(&frame(&[(40, 10)], 0.0), None, vec![target(40, 10)]);
        let small = Frame::new(32, 32, 1, vec![0.2; 32 * 32]).unwrap();
        assert_eq!(
            gate.filter(&small, None, vec![target(5, 5)]).len(),
            1,
            "nothing to compare with"
        );
        assert_eq!(gate.judged, 0);
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for (k, r, reg, expected) in [
            (0, 0.5, 0, "--motion-gate 0"),
            (MAX_MOTION_GATE + 1, 0.5, 0, "1 to 30 frames"),
            (3, 1.5, 0, "--motion-min 1.5"),
            (3, f32::NAN, 0, "--motion-min NaN"),
            (3, 0.5, MAX_STATIC_REGISTER + 1, "--motion-register 65"),
        ] {
            let e = MotionGate::new(k, r, reg).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }
}
