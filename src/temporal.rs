//! The temporal input of a motion model: a second plane for the segmentation net S, the frame
//! minus the frame K back aligned by the scene's shift.
//!
//! Why: on a panning camera a warm point of the ground looks, in one frame, like an aircraft of
//! the same size and contrast (DAUB sequence 5 in models/README.md); what tells them apart is
//! that the ground point moves with the scene and the aircraft does not. Aligned by the scene's
//! accumulated shift (`stream::register`), the difference is near zero on every fixed point of
//! the scene however the camera pans, and a dipole (+ where a target is, − where it was) on
//! anything moving against it.
//!
//! A frame without an earlier one to compare with (a still image, the first K frames of a
//! stream, the first frame after a change of size) gets a zero plane: the net then sees a still
//! scene and must find targets by their appearance alone, as a single-frame net does. So does
//! a target that moves with the scene (a hovering aircraft, one the camera tracks): the plane
//! lowers the cost of rejecting clutter, it does not replace finding targets. Where the
//! translation does not explain the scene (parallax of near ground, zoom, rolling-shutter skew)
//! the plane holds residuals that look like motion.
//!
//! The plane is in intensity units (a difference of two [0, 1] frames); the preprocessing
//! scales it by the image's standard deviation without its mean (`PreprocessSpec`).

use crate::image_io::Frame;
use crate::limits::{MAX_MOTION_GATE, MAX_STATIC_REGISTER};
use crate::stream::register::{self, Lagged, SceneHistory, Shift};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// How a motion model's temporal plane is made; stored in its weights' preprocessing spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotionInput {
    /// Frames back the current frame is compared with (K): over 1–3 frames most DAUB aircraft
    /// have not yet cleared their own place, over 5–8 they have (the motion gate's grid).
    pub lag: usize,
    /// Largest scene shift per frame the registration follows, px (0: a fixed camera,
    /// compared pixel for pixel).
    pub reach: usize,
}

impl MotionInput {
    /// What a new motion model takes unless told otherwise: K = 5, where DAUB's aircraft have
    /// cleared their own place (the motion gate's grid), and a reach of 16 px a frame, twice
    /// the fastest pan the gate's DAUB runs needed.
    pub const DEFAULT: MotionInput = MotionInput { lag: 5, reach: 16 };

    /// Checks the lag and reach against the stated limits.
    pub fn validate(&self) -> Result<()> {
        if self.lag == 0 || self.lag > MAX_MOTION_GATE {
            bail!("motion input: lag {} frames, expected 1 to {MAX_MOTION_GATE}", self.lag);
        }
        if self.reach > MAX_STATIC_REGISTER {
            bail!(
                "motion input: reach {} px per frame, expected at most {MAX_STATIC_REGISTER}",
                self.reach
            );
        }
        Ok(())
    }
}

/// A stream's motion planes, frame after frame. The scene's shift from each frame to the next is
/// measured by the caller (one `register::SceneTracker` per stream, shared with the filters
/// that follow pans) and handed to [`Self::attach`].
#[derive(Debug, Clone)]
pub struct MotionPlanes {
    input: MotionInput,
    history: SceneHistory,
}

impl MotionPlanes {
    /// Planes as `input` describes them.
    pub fn new(input: MotionInput) -> Self {
        Self {
            input,
            history: SceneHistory::new(input.lag),
        }
    }

    /// The largest scene shift per frame the caller's tracker must follow (0: none needed).
    pub fn reach(&self) -> usize {
        self.input.reach
    }

    /// `frame` (its image planes) with its motion plane appended. `step` is the scene's shift
    /// since the previous frame (`None`: not measured); ignored for a fixed camera.
    pub fn attach(&mut self, frame: &Frame, step: Option<Shift>) -> Frame {
        self.history.push(frame, step.filter(|_| self.input.reach > 0));
        match self.history.lagged() {
            Some(lagged) => with_motion_plane(frame, &aligned_difference(&lagged)),
            None => with_motion_plane(frame, &vec![0.0; frame.width * frame.height]),
        }
    }
}

/// An ordered sequence's frames with their motion planes, registered frame to frame by a
/// tracker of its own (evaluation and training, where no stream shares one).
pub fn attach_in_order<'a>(frames: impl IntoIterator<Item = &'a Frame>, input: MotionInput) -> Vec<Frame> {
    let mut planes = MotionPlanes::new(input);
    let mut tracker = register::SceneTracker::new(input.reach);
    frames
        .into_iter()
        .map(|f| {
            let step = tracker.step(f.plane(0), f.width, f.height);
            planes.attach(f, step)
        })
        .collect()
}

/// `frame` with one more plane, `plane` (width·height values).
pub fn with_motion_plane(frame: &Frame, plane: &[f32]) -> Frame {
    debug_assert_eq!(plane.len(), frame.width * frame.height, "motion plane size");
    let mut data = Vec::with_capacity(frame.data.len() + plane.len());
    data.extend_from_slice(&frame.data);
    data.extend_from_slice(plane);
    Frame {
        width: frame.width,
        height: frame.height,
        channels: frame.channels + 1,
        data,
    }
}

/// The current plane minus the old one sampled where each pixel's scene point was K frames
/// ago (bilinear). Zero where that point lay outside the old frame: what entered the view
/// since has no earlier value, and an edge-repeated one would read as motion.
pub fn aligned_difference(l: &Lagged) -> Vec<f32> {
    let (w, h) = l.size;
    let (sx, sy) = l.shift;
    let (max_x, max_y) = ((w - 1) as f64, (h - 1) as f64);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let oy = y as f64 - sy;
        for x in 0..w {
            let ox = x as f64 - sx;
            let inside = (0.0..=max_x).contains(&ox) && (0.0..=max_y).contains(&oy);
            out.push(if inside {
                l.current[y * w + x] - register::sample(l.old, w, h, ox, oy)
            } else {
                0.0
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth scene texture seen by a camera that has panned `pan` px (scene points move
    /// right by `pan`), with a hot spot fixed in the image at `hot`.
    fn view(pan: usize, hot: Option<(usize, usize)>) -> Frame {
        let (w, h) = (48, 40);
        let mut data: Vec<f32> = (0..w * h)
            .map(|k| {
                let (x, y) = ((k % w) as f32 - pan as f32, (k / w) as f32);
                0.4 + 0.1 * (0.3 * x).sin() * (0.2 * y).cos()
            })
            .collect();
        if let Some((x, y)) = hot {
            data[y * w + x] = 0.95;
        }
        Frame::new(w, h, 1, data).unwrap()
    }

    #[test]
    fn a_registered_pan_leaves_zero_and_a_mover_a_dipole() {
        let input = MotionInput { lag: 2, reach: 4 };
        // The scene pans 1 px a frame; a target moves 3 px a frame against the image.
        let frames: Vec<Frame> = (0..5).map(|i| view(i, Some((6 + 3 * i, 20)))).collect();
        let out = attach_in_order(&frames, input);
        for (f, o) in frames.iter().zip(&out) {
            assert_eq!(
                (o.channels, o.plane(0)),
                (2, f.plane(0)),
                "the image plane is kept as it was"
            );
        }
        for (i, f) in out.iter().enumerate() {
            let motion = f.plane(1);
            if i < 2 {
                assert!(motion.iter().all(|&v| v == 0.0), "frame {i}: nothing 2 frames back yet");
                continue;
            }
            let w = f.width;
            let at = |x: usize, y: usize| motion[y * w + x];
            // Where the target is now: new contrast; where its scene point was 2 frames ago
            // (2 px of pan to the right of its old place in the image): a negative.
            let was = 6 + 3 * (i - 2) + 2;
            assert!(at(6 + 3 * i, 20) > 0.4, "frame {i}: {}", at(6 + 3 * i, 20));
            assert!(at(was, 20) < -0.4, "frame {i}: {}", at(was, 20));
            // Away from the target's two places the registered scene cancels out.
            let rest = (0..f.height)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .filter(|&(x, y)| y.abs_diff(20) > 1 || (x.abs_diff(6 + 3 * i) > 1 && x.abs_diff(was) > 1))
                .map(|(x, y)| at(x, y).abs())
                .fold(0.0f32, f32::max);
            assert!(rest < 0.02, "frame {i}: the scene's largest residual is {rest}");
        }
    }

    #[test]
    fn what_entered_the_view_and_a_fixed_camera_are_handled() {
        // A 3-px pan followed: the left 3·lag columns have no earlier value and read zero.
        let frames: Vec<Frame> = (0..3).map(|i| view(3 * i, None)).collect();
        let out = attach_in_order(&frames, MotionInput { lag: 1, reach: 4 });
        let m = out[2].plane(1);
        assert!((0..40).all(|y| (0..2).all(|x| m[y * 48 + x] == 0.0)));
        // A fixed camera (reach 0) compares pixel for pixel: the same pan is all motion.
        let fixed = attach_in_order(&frames, MotionInput { lag: 1, reach: 0 });
        let largest = fixed[2].plane(1).iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(largest > 0.05, "{largest}");
    }

    #[test]
    fn a_new_frame_size_restarts_with_a_zero_plane() {
        let mut planes = MotionPlanes::new(MotionInput { lag: 1, reach: 0 });
        planes.attach(&view(0, Some((10, 10))), None);
        let small = Frame::new(16, 16, 1, vec![0.3; 256]).unwrap();
        assert!(planes.attach(&small, None).plane(1).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn lags_and_reaches_beyond_the_limits_are_refused() {
        for (lag, reach, expected) in [(0, 0, "lag 0"), (31, 0, "1 to 30"), (5, 65, "reach 65")] {
            let e = MotionInput { lag, reach }.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
        assert!(MotionInput { lag: 5, reach: 16 }.validate().is_ok());
    }
}
