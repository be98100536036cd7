//! From a probability map to targets: threshold, 8-connected components, and per target its
//! probability-weighted sub-pixel centroid, area, bounding box and peak probability.

use serde::{Deserialize, Serialize};

/// One frame's result from any segmenter (network or baseline).
#[derive(Debug, Clone)]
pub struct Detection {
    /// Columns of the frame.
    pub width: usize,
    /// Rows of the frame.
    pub height: usize,
    /// Target probability per pixel, row-major, at the frame's size.
    pub prob: Vec<f32>,
    /// Components of `prob > threshold`.
    pub targets: Vec<Target>,
}

impl Detection {
    /// A `width × height` probability map and its targets: the components of `prob > threshold`.
    pub fn from_prob(width: usize, height: usize, prob: Vec<f32>, threshold: f32) -> Self {
        let targets = find_targets(&prob, width, height, threshold);
        Self {
            width,
            height,
            prob,
            targets,
        }
    }

    /// The binary mask `prob > threshold`.
    pub fn mask(&self, threshold: f32) -> Vec<bool> {
        threshold_mask(&self.prob, threshold)
    }
}

/// Which pixels of a probability map are target: `prob > threshold`, strictly (the one rule
/// for `infer`, `run`, `eval` and the trainer's validations).
pub fn threshold_mask(prob: &[f32], threshold: f32) -> Vec<bool> {
    prob.iter().map(|&p| p > threshold).collect()
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

/// Targets of a probability map: components of `prob > threshold`.
pub fn find_targets(prob: &[f32], w: usize, h: usize, threshold: f32) -> Vec<Target> {
    let comps = label_components(&threshold_mask(prob, threshold), w, h);
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
        let t = find_targets(&prob, 5, 5, 0.5);
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
        let t = find_targets(&prob, 3, 3, 0.5);
        assert_eq!(t.len(), 1);
        assert!((t[0].x - 1.0).abs() < 1e-9);
        assert!((t[0].y - (0.8 * 0.0 + 2.2) / 3.0).abs() < 1e-6);
        assert_eq!(t[0].peak, 1.0);
        assert_eq!(t[0].pixel_centroid, (1.0, 0.75));
    }

    #[test]
    fn threshold_is_strict() {
        assert!(find_targets(&[0.5, 0.5], 2, 1, 0.5).is_empty());
    }
}
