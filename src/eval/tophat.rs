//! The training-free baseline: white top-hat (image minus its grey opening with a square
//! structuring element) followed by an adaptive threshold `mean + k·std` of the response.
//! Every trained model is compared with it (`--model tophat`).

use crate::detect::{Detection, TargetRule};
use crate::image_io::Frame;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
/// The top-hat baseline's parameters.
pub struct TopHat {
    /// Side of the square structuring element; targets smaller than it survive the top-hat.
    pub se: usize,
    /// Threshold in standard deviations of the response above its mean.
    pub k: f32,
    /// Minimum response (intensity units in [0, 1]) a target pixel needs, whatever the statistics.
    pub min_contrast: f32,
}

/// Defaults chosen on the SIRST train split (best dataset IoU over se ∈ {7, 9, 11, 15},
/// k ∈ {3…28}); see models/README.md.
impl Default for TopHat {
    fn default() -> Self {
        Self {
            se: 9,
            k: 12.0,
            min_contrast: 0.02,
        }
    }
}

impl TopHat {
    /// The response `img − open(img)` of a gray frame (the first channel).
    pub fn response(&self, frame: &Frame) -> Vec<f32> {
        let (w, h) = (frame.width, frame.height);
        let img = frame.plane(0);
        let eroded = filter(img, w, h, self.se, f32::min);
        let opened = filter(&eroded, w, h, self.se, f32::max);
        img.iter().zip(&opened).map(|(a, b)| (a - b).max(0.0)).collect()
    }

    /// A soft score per pixel: 0.5 exactly at the adaptive threshold, so `prob > 0.5` is the
    /// baseline's mask and the score weights centroids like a network's probability would.
    pub fn detect(&self, frame: &Frame, rule: TargetRule) -> Detection {
        let r = self.response(frame);
        let n = r.len() as f64;
        let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let t = (mean + self.k as f64 * std).max(self.min_contrast as f64) as f32;
        let scale = (std as f32).max(1e-6);
        let prob = r.iter().map(|&v| 1.0 / (1.0 + (-(v - t) / scale).exp())).collect();
        Detection::from_prob(frame.width, frame.height, prob, rule)
    }
}

/// Separable square min or max filter of side `k` (edges use the pixels inside the frame).
fn filter(src: &[f32], w: usize, h: usize, k: usize, op: fn(f32, f32) -> f32) -> Vec<f32> {
    let r = k / 2;
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            tmp[y * w + x] = row[a..=b].iter().copied().reduce(op).unwrap_or(row[x]);
        }
    }
    let mut out = vec![0f32; w * h];
    for x in 0..w {
        for y in 0..h {
            let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
            out[y * w + x] = (a..=b).map(|yy| tmp[yy * w + x]).reduce(op).unwrap_or(tmp[y * w + x]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_small_bright_spot_and_ignores_a_large_plateau() {
        let (w, h) = (64, 64);
        let mut data = vec![0.3f32; w * h];
        for y in 10..40 {
            for x in 30..60 {
                data[y * w + x] = 0.6; // large warm region: removed by the opening
            }
        }
        data[50 * w + 12] = 0.8; // 1-pixel target
        data[50 * w + 13] = 0.7;
        let frame = Frame::new(w, h, 1, data).unwrap();
        let det = TopHat::default().detect(&frame, TargetRule::plain(0.5));
        assert_eq!(det.targets.len(), 1, "{:?}", det.targets);
        assert!((det.targets[0].x - 12.4).abs() < 0.5 && (det.targets[0].y - 50.0).abs() < 1e-9);
    }
}
