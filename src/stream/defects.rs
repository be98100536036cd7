//! A scene-based defect map for streams: stuck pixels found from the frames themselves.
//!
//! Why: an uncalibrated microbolometer has stuck pixels (dead or hot): lone values far from
//! all their neighbours, with none of the optics' blur. Every model trained so far reports
//! them as point targets (two stuck pixels added to each SIRST val image: +1.6 false targets
//! per frame and nIoU 0.65 → 0.45 with the shipped weights, `models/README.md`). No rule on one
//! frame separates them from real targets, because DAUB's aircraft are lone full-scale pixels
//! too. Time does: a defect stays on the same sensor pixel, a target moves (DAUB's annotated
//! targets stay on one pixel for at most 7 frames in a row). So a pixel that is an isolated
//! spike (brighter than each of its 8 neighbours by more than `contrast`, or darker than each)
//! in each of the last `frames` frames is replaced by the median of its neighbours, until a
//! frame in which it is not a spike.
//!
//! Where it fails: a point target that stays on one pixel for `frames` frames (a fixed camera
//! watching a hovering drone) is erased; `--static-clutter` would reject it too, since it
//! cannot tell such a target from a static hot spot either. Two adjacent defects are not
//! isolated and are not found. The first `frames` frames still see every defect. A calibration
//! profile's bad-pixel map (`srsnet calibrate`) has none of these limits.

use crate::calibration::replace_bad_pixels;
use anyhow::{bail, Result};

/// Frames a pixel must be an isolated spike in before it is replaced (`srsnet run`'s default:
/// one second at 25 fps, over three times the longest stay of a DAUB target on one pixel).
pub const DEFAULT_FRAMES: u32 = 25;

/// The default contrast, in intensity units: the level above which no lone pixel of SIRST,
/// DAUB 1–3 or the real backgrounds differs from all its neighbours (`models/README.md`).
pub const DEFAULT_CONTRAST: f32 = 0.3;

/// Which pixels of a stream are defects, from how long each has been an isolated spike.
#[derive(Debug, Clone)]
pub struct DefectMap {
    frames: u16,
    contrast: f32,
    size: (usize, usize),
    /// Consecutive frames, up to now, in which each pixel was an isolated spike (u16: the map
    /// is part of `srsnet run`'s 640×512 memory budget, 0.66 MB as it is). A pixel is a defect
    /// while its streak is at least `frames`.
    streak: Vec<u16>,
}

impl DefectMap {
    /// A map that replaces pixels after `frames` frames as spikes of more than `contrast`.
    pub fn new(frames: u32, contrast: f32) -> Result<Self> {
        if frames == 0 {
            bail!("the defect map needs at least 1 frame of evidence");
        }
        let Ok(frames) = u16::try_from(frames) else {
            bail!("--defect-frames {frames}: at most {} frames", u16::MAX);
        };
        if !(contrast > 0.0 && contrast < 1.0) {
            bail!("--defect-contrast {contrast}: expected a value between 0 and 1 (intensity units)");
        }
        Ok(Self {
            frames,
            contrast,
            size: (0, 0),
            streak: Vec::new(),
        })
    }

    /// Updates the map with one frame of intensities (row-major `width × height`, in [0, 1])
    /// and replaces, in place, the pixels it now holds as defects. Returns how many it
    /// replaced. A frame of another size starts a new map.
    pub fn apply(&mut self, width: usize, height: usize, values: &mut [f32]) -> usize {
        assert_eq!(values.len(), width * height, "a {width}×{height} frame");
        if self.size != (width, height) {
            self.size = (width, height);
            self.streak = vec![0; width * height];
        }
        let (c, mut found) = (self.contrast, 0);
        for y in 0..height {
            let row = &values[y * width..(y + 1) * width];
            for x in 0..width {
                let i = y * width + x;
                // Most pixels fail already on their left or right neighbour: test those first
                // (with the full test on every pixel a 640×512 frame's preprocessing took
                // 2.5 ms at p50, with this 1.0 ms; 0.5 ms without the map).
                let p = row[x];
                let candidate =
                    (x == 0 || (p - row[x - 1]).abs() > c) && (x + 1 == width || (p - row[x + 1]).abs() > c);
                let spike = candidate && is_isolated_spike(values, width, height, x, y, c);
                self.streak[i] = if spike { self.streak[i].saturating_add(1) } else { 0 };
                found += (self.streak[i] >= self.frames) as usize;
            }
        }
        if found > 0 {
            let defect: Vec<bool> = self.streak.iter().map(|&s| s >= self.frames).collect();
            replace_bad_pixels(values, width, height, &defect);
        }
        found
    }
}

/// Whether pixel (x, y) exceeds each of its (3 to 8) neighbours by more than `contrast`, or
/// falls below each of them by more than that.
fn is_isolated_spike(v: &[f32], w: usize, h: usize, x: usize, y: usize, contrast: f32) -> bool {
    let p = v[y * w + x];
    let (mut above, mut below, mut neighbours) = (true, true, 0);
    for ny in y.saturating_sub(1)..(y + 2).min(h) {
        for nx in x.saturating_sub(1)..(x + 2).min(w) {
            if (nx, ny) == (x, y) {
                continue;
            }
            let q = v[ny * w + nx];
            above &= p - q > contrast;
            below &= q - p > contrast;
            if !(above || below) {
                return false;
            }
            neighbours += 1;
        }
    }
    neighbours >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12×10 frame of smooth background (0.4–0.5) with a lone bright pixel at `at`.
    fn frame_with_spike(at: Option<(usize, usize)>) -> Vec<f32> {
        let mut v: Vec<f32> = (0..120)
            .map(|i| 0.4 + 0.01 * ((i % 12) as f32 * 0.7).sin().abs() * 10.0)
            .collect();
        if let Some((x, y)) = at {
            v[y * 12 + x] = 1.0;
        }
        v
    }

    #[test]
    fn a_stuck_pixel_is_replaced_after_the_frames_and_a_moving_spike_never() {
        let mut map = DefectMap::new(5, 0.3).unwrap();
        for t in 0..8 {
            // A stuck pixel at (3, 4) and a spike that moves one pixel per frame.
            let mut v = frame_with_spike(Some((3, 4)));
            v[7 * 12 + 1 + t] = 1.0;
            let before = v.clone();
            let replaced = map.apply(12, 10, &mut v);
            if t < 4 {
                assert_eq!((replaced, &v), (0, &before), "frame {t}: not yet evidence enough");
            } else {
                assert_eq!(replaced, 1, "frame {t}");
                let neighbours: Vec<f32> = [(2, 3), (3, 3), (4, 3), (2, 4), (4, 4), (2, 5), (3, 5), (4, 5)]
                    .iter()
                    .map(|&(x, y)| before[y * 12 + x])
                    .collect();
                let (lo, hi) = neighbours.iter().fold((1f32, 0f32), |(l, h), &n| (l.min(n), h.max(n)));
                let got = v[4 * 12 + 3];
                assert!(
                    got >= lo && got <= hi,
                    "frame {t}: {got} not within the neighbours' range"
                );
                // The moving spike (a target) is untouched, and so is everything else.
                let changed = v.iter().zip(&before).filter(|(a, b)| a != b).count();
                assert_eq!(changed, 1, "frame {t}");
            }
        }
        // Once the pixel is not a spike, it is itself again at once.
        let mut v = frame_with_spike(None);
        let before = v.clone();
        assert_eq!(map.apply(12, 10, &mut v), 0);
        assert_eq!(v, before);
    }

    #[test]
    fn dark_defects_and_corner_pixels_count_and_soft_or_blurred_peaks_do_not() {
        let mut map = DefectMap::new(2, 0.3).unwrap();
        let mut found = 0;
        for _ in 0..2 {
            let mut v = frame_with_spike(None);
            v[0] = 1.0; // a corner: 3 neighbours
            v[5 * 12 + 6] = 0.0; // dead
            v[2 * 12 + 9] = 0.7; // a soft peak: 0.2–0.3 above its neighbours
                                 // A blurred 2×2 target: no pixel is above all its neighbours by 0.3.
            for (x, y) in [(8, 7), (9, 7), (8, 8), (9, 8)] {
                v[y * 12 + x] = 0.95;
            }
            found = map.apply(12, 10, &mut v);
        }
        assert_eq!(found, 2);
    }

    #[test]
    fn a_new_frame_size_starts_over_and_bad_settings_are_errors() {
        let mut map = DefectMap::new(2, 0.3).unwrap();
        let mut v = frame_with_spike(Some((3, 4)));
        map.apply(12, 10, &mut v.clone());
        assert_eq!(map.apply(12, 10, &mut v), 1);
        let mut small = vec![0.4; 30];
        small[7] = 1.0;
        assert_eq!(map.apply(6, 5, &mut small), 0, "the evidence was for another size");
        assert!(DefectMap::new(0, 0.3)
            .unwrap_err()
            .to_string()
            .contains("at least 1 frame"));
        let too_long = DefectMap::new(70_000, 0.3).unwrap_err().to_string();
        assert!(too_long.contains("at most 65535"), "{too_long}");
        for c in [0.0, 1.0, f32::NAN, -0.2] {
            assert!(DefectMap::new(5, c)
                .unwrap_err()
                .to_string()
                .contains("between 0 and 1"));
        }
    }
}
