//! Per-frame preprocessing in the stream: raw values → calibration (NUC, bad pixels) →
//! intensities in [0, 1] → the scene-based defect map (`defects`) → the model's channel count.
//!
//! 8-bit frames map by ÷255. 16-bit frames (14-bit radiometric cores included) are mapped
//! with a robust percentile stretch: the 0.5th and 99.9th percentiles of each frame, smoothed
//! over time with an exponential moving average (weight 0.1 for the new frame) so the mapping
//! does not flicker, map to 0 and 1. `Stretch::Fixed` maps by ÷65535 instead, as single-image
//! inference does for 16-bit files.

use super::defects::DefectMap;
use super::frame::{Pixels, RawFrame};
use crate::calibration::Profile;
use crate::image_io::Frame;
use anyhow::Result;

#[derive(Debug, Clone, Copy, PartialEq)]
/// How 16-bit frames map to intensities in [0, 1].
pub enum Stretch {
    /// Percentile stretch smoothed over time (16-bit frames).
    Percentile {
        /// The quantile that maps to 0.
        low: f64,
        /// The quantile that maps to 1.
        high: f64,
        /// Weight of the new frame's range in the moving average.
        smoothing: f64,
    },
    /// ÷65535.
    Fixed,
}

impl Default for Stretch {
    fn default() -> Self {
        Stretch::Percentile {
            low: 0.005,
            high: 0.999,
            smoothing: 0.1,
        }
    }
}

/// Per-frame preprocessing of the stream (keeps the smoothed stretch range between frames).
pub struct Preprocessor {
    calibration: Option<Profile>,
    stretch: Stretch,
    channels: usize,
    range: Option<(f64, f64)>,
    defects: Option<DefectMap>,
    replaced: usize,
}

impl Preprocessor {
    /// A preprocessor applying `calibration`, then `stretch`, then expanding to `channels`.
    pub fn new(calibration: Option<Profile>, stretch: Stretch, channels: usize) -> Self {
        Self {
            calibration,
            stretch,
            channels,
            range: None,
            defects: None,
            replaced: 0,
        }
    }

    /// Also replaces the pixels `map` finds to be stuck, after the intensity mapping.
    pub fn with_defect_map(mut self, map: DefectMap) -> Self {
        self.defects = Some(map);
        self
    }

    /// Pixels the defect map replaced in the last frame processed.
    pub fn replaced_defects(&self) -> usize {
        self.replaced
    }

    /// The frame as the model's input intensities; fails on a calibration size mismatch.
    pub fn process(&mut self, raw: &RawFrame) -> Result<Frame> {
        let mut values: Vec<f32> = match &raw.pixels {
            Pixels::U8(v) => v.iter().map(|&p| p as f32).collect(),
            Pixels::U16(v) => v.iter().map(|&p| p as f32).collect(),
        };
        if let Some(cal) = &self.calibration {
            cal.apply(raw.width, raw.height, &mut values)?;
        }
        let mut unit: Vec<f32> = match (&raw.pixels, self.stretch) {
            (Pixels::U8(_), _) => values.iter().map(|v| (v / 255.0).clamp(0.0, 1.0)).collect(),
            (Pixels::U16(_), Stretch::Fixed) => values.iter().map(|v| (v / 65535.0).clamp(0.0, 1.0)).collect(),
            (Pixels::U16(_), Stretch::Percentile { low, high, smoothing }) => {
                let (lo, hi) = percentiles(&values, low, high);
                let (lo, hi) = match self.range {
                    Some((l, h)) => (l + smoothing * (lo - l), h + smoothing * (hi - h)),
                    None => (lo, hi),
                };
                self.range = Some((lo, hi));
                let span = (hi - lo).max(1.0);
                values
                    .iter()
                    .map(|&v| ((v as f64 - lo) / span).clamp(0.0, 1.0) as f32)
                    .collect()
            }
        };
        if let Some(map) = &mut self.defects {
            self.replaced = map.apply(raw.width, raw.height, &mut unit);
        }
        let n = unit.len();
        let mut data = Vec::with_capacity(n * self.channels);
        for _ in 0..self.channels {
            data.extend_from_slice(&unit);
        }
        Frame::new(raw.width, raw.height, self.channels, data)
    }
}

/// The `low` and `high` quantiles of `values` (raw units, 0..65535) via a 65536-bin histogram.
fn percentiles(values: &[f32], low: f64, high: f64) -> (f64, f64) {
    let mut hist = vec![0u32; 65536];
    for &v in values {
        hist[v.clamp(0.0, 65535.0) as usize] += 1;
    }
    let n = values.len() as f64;
    let find = |q: f64| -> f64 {
        let target = (q * n).ceil().max(1.0) as u64;
        let mut acc = 0u64;
        for (i, &c) in hist.iter().enumerate() {
            acc += c as u64;
            if acc >= target {
                return i as f64;
            }
        }
        65535.0
    };
    (find(low), find(high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn raw16(values: Vec<u16>, w: usize, h: usize) -> RawFrame {
        RawFrame {
            index: 0,
            timestamp: Duration::ZERO,
            captured_at: Instant::now(),
            width: w,
            height: h,
            pixels: Pixels::U16(values),
            origin: "t".into(),
            truth: None,
        }
    }

    #[test]
    fn percentile_stretch_maps_the_bulk_to_unit_range() {
        let values: Vec<u16> = (0..1000).map(|i| 3000 + i as u16).collect();
        let mut p = Preprocessor::new(None, Stretch::default(), 1);
        let f = p.process(&raw16(values, 1000, 1)).unwrap();
        assert!(f.data[0] <= 0.01 && f.data[999] >= 0.99);
        let mid = f.data[500];
        assert!((mid - 0.5).abs() < 0.02, "{mid}");
    }

    #[test]
    fn stretch_is_smoothed_over_time() {
        let mut p = Preprocessor::new(None, Stretch::default(), 1);
        p.process(&raw16((0..100).map(|i| 1000 + i).collect(), 100, 1)).unwrap();
        // A sudden jump of the scene's level moves the mapping by 10 % only.
        let f = p.process(&raw16((0..100).map(|i| 5000 + i).collect(), 100, 1)).unwrap();
        assert!(f.data.iter().all(|&v| v == 1.0));
    }
}
