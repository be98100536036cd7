//! Postprocessing of a frame's targets: optional area limits, static-clutter rejection (fixed
//! points of the scene, followed through a pan with `register`) and temporal confirmation (a
//! target must have been seen in M of the last N frames within R pixels). Scoring against
//! ground truth is `eval::metrics`' job, shared with `srsnet eval`.

use super::register;
use crate::detect::Target;
use crate::limits::{MAX_CONFIRM_WINDOW, MAX_STATIC_GAP, MAX_STATIC_REGISTER};
use anyhow::{bail, Result};
use std::collections::VecDeque;

/// Keep only targets with an area in `[min, max]` pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AreaLimits {
    min: Option<usize>,
    max: Option<usize>,
}

impl AreaLimits {
    /// Limits with `min ≤ max` when both are given.
    pub fn new(min: Option<usize>, max: Option<usize>) -> Result<Self> {
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                bail!("--min-area {lo} is above --max-area {hi}: no target could pass");
            }
        }
        Ok(Self { min, max })
    }

    /// True when `t` passes.
    pub fn keep(&self, t: &Target) -> bool {
        self.min.is_none_or(|m| t.area >= m) && self.max.is_none_or(|m| t.area <= m)
    }
}

/// M-of-N temporal confirmation within a radius.
#[derive(Debug, Clone)]
pub struct Confirmer {
    m: usize,
    n: usize,
    radius: f64,
    history: VecDeque<Vec<(f64, f64)>>,
}

impl Confirmer {
    /// `1 ≤ m ≤ n ≤` [`MAX_CONFIRM_WINDOW`], `radius` finite and non-negative.
    pub fn new(m: usize, n: usize, radius: f64) -> Result<Self> {
        if m == 0 || n == 0 || m > n {
            bail!("temporal confirmation needs 1 ≤ M ≤ N, got {m} of {n}");
        }
        if n > MAX_CONFIRM_WINDOW {
            bail!("temporal confirmation window N = {n} exceeds the limit of {MAX_CONFIRM_WINDOW} frames");
        }
        if !radius.is_finite() || radius < 0.0 {
            bail!("confirmation radius must be a non-negative number of pixels, got {radius}");
        }
        Ok(Self {
            m,
            n,
            radius,
            history: VecDeque::with_capacity(n),
        })
    }

    /// Keeps the targets seen (within the radius) in at least M of the last N frames,
    /// this one included. All detections enter the history, confirmed or not.
    pub fn confirm(&mut self, targets: Vec<Target>) -> Vec<Target> {
        let here: Vec<(f64, f64)> = targets.iter().map(|t| (t.x, t.y)).collect();
        let r2 = self.radius * self.radius;
        let kept = targets
            .into_iter()
            .filter(|t| {
                let past = self.history.iter().rev().take(self.n - 1);
                let seen = past
                    .filter(|frame| frame.iter().any(|&(x, y)| (x - t.x).powi(2) + (y - t.y).powi(2) <= r2))
                    .count();
                seen + 1 >= self.m
            })
            .collect();
        self.history.push_back(here);
        while self.history.len() > self.n {
            self.history.pop_front();
        }
        kept
    }
}

/// Static-clutter rejection: a detection that stays within `radius` px of the same place *of the
/// scene* for more than `frames` consecutive still frames is clutter (a warm chimney, a glint on
/// a rail, a hot point of the ground), not a target.
///
/// For a fixed camera (no [`StaticClutter::following_pans`]) the scene is still while the mean
/// absolute difference between consecutive frames (sampled every 4th pixel of the first plane)
/// stays below `still_below` intensity units; any larger change (pan, zoom, gain change) starts
/// every track afresh, so a moving camera never rejects anything. Following pans of up to N px:
/// each frame is aligned with the one before by the translation of at most N px that fits best
/// (`register::SceneTracker`, run by the caller once per frame for every filter that follows
/// pans, and handed to [`StaticClutter::filter`]), the scene counts as still while what that
/// translation leaves unexplained stays below `still_below`, and every track moves with the
/// scene, so a point of the ground carried across the image by the pan stays on its track while
/// an aircraft, moving against the scene, leaves it.
#[derive(Debug, Clone)]
pub struct StaticClutter {
    frames: usize,
    radius: f64,
    still_below: f32,
    gap: usize,
    tracks: Vec<Track>,
    /// The previous frame, subsampled, for a fixed camera's stillness test.
    previous: Option<(usize, usize, Vec<f32>)>,
    /// The largest scene shift per frame followed, px (0: a fixed camera).
    max_shift: usize,
    /// Detections rejected as clutter so far.
    pub rejected: u64,
    /// Frames judged still so far (of all frames seen); with registration, still up to a shift.
    pub still_frames: u64,
}

/// A place of the scene where detections have been seen.
#[derive(Debug, Clone, Copy)]
struct Track {
    /// Where it started, moved along with the scene since (so slow drift still ends it).
    x: f64,
    y: f64,
    /// Frames it was detected in.
    age: usize,
    /// Still frames since it was last detected.
    missed: usize,
}

impl StaticClutter {
    /// Rejects detections static for more than `frames` frames within `radius` px on a fixed
    /// camera; [`Self::following_pans`] and [`Self::bridging_gaps`] widen that.
    pub fn new(frames: usize, radius: f64, still_below: f32) -> Result<Self> {
        if frames == 0 {
            bail!("--static-clutter needs at least 1 frame");
        }
        if !radius.is_finite() || radius < 0.0 || !still_below.is_finite() || still_below < 0.0 {
            bail!("static-clutter radius and stillness threshold must be non-negative numbers");
        }
        Ok(Self {
            frames,
            radius,
            still_below,
            gap: 0,
            tracks: Vec::new(),
            previous: None,
            max_shift: 0,
            rejected: 0,
            still_frames: 0,
        })
    }

    /// Follows scene shifts of up to `max_shift` px per frame (0: a fixed camera).
    pub fn following_pans(mut self, max_shift: usize) -> Result<Self> {
        if max_shift > MAX_STATIC_REGISTER {
            bail!("--static-register {max_shift}: at most {MAX_STATIC_REGISTER} px per frame");
        }
        self.max_shift = max_shift;
        Ok(self)
    }

    /// The largest scene shift per frame it follows, px (0: a fixed camera); the caller's
    /// tracker must search at least this far.
    pub fn max_shift(&self) -> usize {
        self.max_shift
    }

    /// Keeps a track through up to `frames` still frames in which its point is not detected
    /// (a weak warm point flickers around the threshold); 0 ends it at its first miss.
    pub fn bridging_gaps(mut self, frames: usize) -> Result<Self> {
        if frames > MAX_STATIC_GAP {
            bail!("--static-gap {frames}: at most {MAX_STATIC_GAP} frames");
        }
        self.gap = frames;
        Ok(self)
    }

    /// The targets of `frame` that are not static clutter. `step` is the scene's shift since the
    /// previous frame (`None`: not measured or not explained); ignored for a fixed camera.
    pub fn filter(
        &mut self,
        frame: &crate::image_io::Frame,
        step: Option<register::Shift>,
        targets: Vec<Target>,
    ) -> Vec<Target> {
        let Some((dx, dy)) = self.scene_motion(frame, step) else {
            self.tracks = targets
                .iter()
                .map(|t| Track {
                    x: t.x,
                    y: t.y,
                    age: 1,
                    missed: 0,
                })
                .collect();
            return targets;
        };
        self.still_frames += 1;
        let mut old = std::mem::take(&mut self.tracks);
        for track in &mut old {
            (track.x, track.y) = (track.x + dx, track.y + dy);
        }
        let r2 = self.radius * self.radius;
        let mut kept = Vec::with_capacity(targets.len());
        for t in targets {
            let near = old
                .iter()
                .enumerate()
                .map(|(k, tr)| (k, (tr.x - t.x).powi(2) + (tr.y - t.y).powi(2)))
                .filter(|&(_, d2)| d2 <= r2)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let track = match near {
                Some((k, _)) => {
                    let tr = old.swap_remove(k);
                    Track {
                        age: tr.age + 1,
                        missed: 0,
                        ..tr
                    }
                }
                None => Track {
                    x: t.x,
                    y: t.y,
                    age: 1,
                    missed: 0,
                },
            };
            self.tracks.push(track);
            if track.age > self.frames {
                self.rejected += 1;
            } else {
                kept.push(t);
            }
        }
        // Tracks not seen in this frame wait up to `gap` frames for their point to come back.
        let waiting = old.into_iter().filter(|tr| tr.missed < self.gap);
        self.tracks.extend(waiting.map(|tr| Track {
            missed: tr.missed + 1,
            ..tr
        }));
        kept
    }

    /// How the scene moved since the previous frame, px, when it is still (up to that shift
    /// when registering); `None` when it changed, or on the first frame or a new frame size.
    fn scene_motion(&mut self, frame: &crate::image_io::Frame, step: Option<register::Shift>) -> Option<(f64, f64)> {
        let plane = frame.plane(0);
        if self.max_shift > 0 {
            // A tracker shared with the motion gate may search further than this filter follows.
            let within = |s: &register::Shift| s.dx.abs().max(s.dy.abs()) <= self.max_shift as f64;
            let s = step.filter(within)?;
            return (s.residual < self.still_below).then_some((s.dx, s.dy));
        }
        let current: Vec<f32> = plane.iter().step_by(4).copied().collect();
        let previous = self.previous.replace((frame.width, frame.height, current));
        let (_, _, prev) = previous.filter(|(w, h, _)| (*w, *h) == (frame.width, frame.height))?;
        let cur = &self.previous.as_ref()?.2;
        let diff = prev.iter().zip(cur).map(|(a, b)| (a - b).abs()).sum::<f32>() / cur.len().max(1) as f32;
        (diff < self.still_below).then_some((0.0, 0.0))
    }
}

/// Parses `M/N` for `--confirm` (a clap value parser).
pub fn parse_confirm_window(s: &str) -> Result<(usize, usize), String> {
    let (m, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected M/N, e.g. 3/5"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}`: `{v}` is not a whole number"))
    };
    let (m, n) = (num(m)?, num(n)?);
    if m == 0 || m > n {
        return Err(format!("`{s}`: needs 1 ≤ M ≤ N"));
    }
    if n > MAX_CONFIRM_WINDOW {
        return Err(format!("`{s}`: N exceeds the limit of {MAX_CONFIRM_WINDOW} frames"));
    }
    Ok((m, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(x: f64, y: f64) -> Target {
        Target {
            id: 1,
            x,
            y,
            area: 2,
            bbox: [0, 0, 0, 0],
            peak: 0.9,
            pixel_centroid: (x, y),
        }
    }

    #[test]
    fn single_frame_flash_is_not_confirmed() {
        let mut c = Confirmer::new(2, 3, 2.0).unwrap();
        assert!(c.confirm(vec![t(10.0, 10.0)]).is_empty());
        assert_eq!(c.confirm(vec![t(11.0, 10.0)]).len(), 1, "seen twice within 2 px");
        assert!(c.confirm(vec![t(50.0, 50.0)]).is_empty(), "a new flash elsewhere");
    }

    #[test]
    fn static_detections_on_a_still_scene_become_clutter() {
        let frame = |shift: f32| crate::image_io::Frame::new(8, 8, 1, vec![0.3 + shift; 64]).unwrap();
        let mut c = StaticClutter::new(2, 1.5, 0.01).unwrap();
        let mut kept = Vec::new();
        for _ in 0..5 {
            kept.push(
                c.filter(
                    &frame(0.0),
                    None,
                    vec![t(10.0, 10.0), t(40.0 + kept.len() as f64 * 3.0, 5.0)],
                )
                .len(),
            );
        }
        // The static detection is reported in its first 2 frames, then it has stayed for more
        // than 2 frames and is clutter; the mover (3 px per frame) always stays.
        assert_eq!(kept, vec![2, 2, 1, 1, 1]);
        assert_eq!(c.rejected, 3);
        // The camera moves: everything starts afresh.
        assert_eq!(c.filter(&frame(0.2), None, vec![t(10.0, 10.0)]).len(), 1);
        assert!(StaticClutter::new(0, 1.0, 0.01).is_err());
    }

    #[test]
    fn a_track_bridges_as_many_missed_frames_as_asked() {
        let still = crate::image_io::Frame::new(8, 8, 1, vec![0.3; 64]).unwrap();
        // A warm point detected in frames 0–2, missed in 3, detected again in 4–6.
        let seen = [true, true, true, false, true, true, true];
        let kept_with = |gap: usize| {
            let mut c = StaticClutter::new(3, 1.5, 0.01).unwrap().bridging_gaps(gap).unwrap();
            let kept: Vec<usize> = seen
                .iter()
                .map(|&s| {
                    c.filter(&still, None, if s { vec![t(10.0, 10.0)] } else { vec![] })
                        .len()
                })
                .collect();
            (kept, c.rejected)
        };
        // Without a gap the miss restarts the track: its age reaches 3 again only in frame 6.
        assert_eq!(kept_with(0), (vec![1, 1, 1, 0, 1, 1, 1], 0));
        // Bridging one frame, frame 4 is its 4th detection: more than 3, so clutter from there.
        assert_eq!(kept_with(1), (vec![1, 1, 1, 0, 0, 0, 0], 3));
        assert!(StaticClutter::new(3, 1.5, 0.01)
            .unwrap()
            .bridging_gaps(MAX_STATIC_GAP + 1)
            .is_err());
        assert!(StaticClutter::new(3, 1.5, 0.01)
            .unwrap()
            .following_pans(MAX_STATIC_REGISTER + 1)
            .is_err());
    }

    #[test]
    fn bad_windows_and_limits_are_refused() {
        assert!(Confirmer::new(1, 1_000_000_000_000, 3.0)
            .unwrap_err()
            .to_string()
            .contains("1000"));
        assert!(Confirmer::new(1, 3, -1.0).is_err());
        assert!(Confirmer::new(1, 3, f64::NAN).is_err());
        assert!(parse_confirm_window("1/1000000000000").unwrap_err().contains("limit"));
        assert!(parse_confirm_window("4/3").is_err());
        assert!(parse_confirm_window("x").is_err());
        assert_eq!(parse_confirm_window("2/3"), Ok((2, 3)));
        assert!(AreaLimits::new(Some(10), Some(5)).is_err());
        assert!(!AreaLimits::new(Some(5), Some(5)).unwrap().keep(&t(0.0, 0.0)));
    }
}
