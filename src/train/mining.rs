//! Hard-negative mining: where the current segmentation net raises false targets on the
//! training samples, so that a share of the next epochs' crops is centred on them.
//!
//! Random crops rarely land on the few blobs of clutter (roof edges, window grids, tree crowns)
//! that the net mistakes for targets: on a 1280×1024 target-free frame a 128² crop holds one
//! of about 6 false targets one time in ten. Mining finds them: the net, folded as in
//! validation, runs over every training sample at its training size, and each predicted
//! component (logit > 0) that touches no target pixel of the sample's mask is a false target.
//! A sample keeps at most [`PER_SAMPLE`] of them, the highest-scoring, so a net that fires
//! everywhere (early in training) cannot flood the pool with one sample's noise.
//!
//! The pool is part of the run state and is written with every checkpoint, so a run resumed
//! mid-epoch draws from the same pool. Mining at an epoch's start runs on the weights of the
//! checkpoint written at the end of the previous epoch, so a resumed run mines the same spots
//! (given the same thread count: the plan engine's sums are ordered per thread count).

use super::data::Sample;
use crate::detect::label_components;
use crate::image_io::Frame;
use anyhow::Result;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The most false targets kept per sample.
pub const PER_SAMPLE: usize = 8;

/// A false target the net raised: sample `sample` of the training set, centred at (`x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardNegative {
    /// Index into the training samples.
    pub sample: usize,
    /// Column of the component's pixel centroid.
    pub x: usize,
    /// Row of the component's pixel centroid.
    pub y: usize,
}

/// Runs the net (`logits`: an image's logits at its own size) over `samples` and returns every
/// sample's false targets (at most [`PER_SAMPLE`] each), in sample order.
pub fn mine(samples: &[Sample], mut logits: impl FnMut(&Frame) -> Result<Vec<f32>>) -> Result<Vec<HardNegative>> {
    let mut pool = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let z = logits(&s.image)?;
        let spots = false_targets(&z, s.mask.as_deref(), s.image.width, s.image.height);
        pool.extend(spots.into_iter().map(|(x, y)| HardNegative { sample: i, x, y }));
    }
    Ok(pool)
}

/// The pixel centroids of the components of `logits > 0` (8-connected) that touch no pixel of
/// `mask > 0.5`, strongest first (by peak logit), at most [`PER_SAMPLE`].
pub fn false_targets(logits: &[f32], mask: Option<&[f32]>, w: usize, h: usize) -> Vec<(usize, usize)> {
    let predicted: Vec<bool> = logits.iter().map(|&z| z > 0.0).collect();
    let comps = label_components(&predicted, w, h);
    // Per component: Σx, Σy, pixels, peak logit, touches a target.
    let mut acc = vec![(0usize, 0usize, 0usize, f32::NEG_INFINITY, false); comps.count];
    for (i, &l) in comps.labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let c = &mut acc[l as usize - 1];
        c.0 += i % w;
        c.1 += i / w;
        c.2 += 1;
        c.3 = c.3.max(logits[i]);
        c.4 |= mask.is_some_and(|m| m[i] > 0.5);
    }
    let mut found: Vec<(f32, usize, usize)> = acc
        .into_iter()
        .filter(|c| !c.4)
        .map(|(sx, sy, n, peak, _)| (peak, (sx + n / 2) / n, (sy + n / 2) / n))
        .collect();
    // Stable sort: equal peaks keep raster order, so the result is deterministic.
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().take(PER_SAMPLE).map(|(_, x, y)| (x, y)).collect()
}

/// With probability `fraction` (and a non-empty pool), a uniformly drawn spot of `pool`.
pub fn draw(pool: &[HardNegative], fraction: f64, rng: &mut ChaCha8Rng) -> Option<HardNegative> {
    if pool.is_empty() || fraction <= 0.0 || !rng.gen_bool(fraction.min(1.0)) {
        return None;
    }
    Some(pool[rng.gen_range(0..pool.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A 12×8 logit map (−5 everywhere) with blobs of logit `v` at the given pixels.
    fn map(blobs: &[(&[(usize, usize)], f32)]) -> Vec<f32> {
        let mut z = vec![-5.0; 12 * 8];
        for (pixels, v) in blobs {
            for &(x, y) in *pixels {
                z[y * 12 + x] = *v;
            }
        }
        z
    }

    #[test]
    fn components_off_the_targets_are_false_targets_strongest_first() {
        // A true target at (2, 2) predicted as a 2×1 blob; a weak false blob at (8..=10, 1);
        // a strong single-pixel false target at (6, 6).
        let z = map(&[
            (&[(2, 2), (3, 2)], 4.0),
            (&[(8, 1), (9, 1), (10, 1)], 0.5),
            (&[(6, 6)], 9.0),
        ]);
        let mut mask = vec![0.0; 12 * 8];
        mask[2 * 12 + 2] = 1.0;
        assert_eq!(false_targets(&z, Some(&mask), 12, 8), vec![(6, 6), (9, 1)]);
        // Without a mask every component is false.
        assert_eq!(false_targets(&z, None, 12, 8), vec![(6, 6), (3, 2), (9, 1)]);
    }

    #[test]
    fn at_most_per_sample_spots_are_kept() {
        // Twelve isolated pixels (every other column of rows 0 and 4), peak rising with x.
        let pixels: Vec<(usize, usize)> = (0..6).flat_map(|i| [(2 * i, 0), (2 * i, 4)]).collect();
        let mut z = vec![-1.0; 12 * 8];
        for &(x, y) in &pixels {
            z[y * 12 + x] = x as f32 + 1.0;
        }
        let got = false_targets(&z, None, 12, 8);
        assert_eq!(got.len(), PER_SAMPLE);
        // The two strongest tie (x = 10): raster order breaks the tie.
        assert_eq!(got[..2], [(10, 0), (10, 4)]);
    }

    #[test]
    fn draws_follow_the_fraction_and_never_from_an_empty_pool() {
        let pool = [
            HardNegative { sample: 3, x: 1, y: 2 },
            HardNegative { sample: 5, x: 7, y: 9 },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let hits = (0..10_000).filter(|_| draw(&pool, 0.3, &mut rng).is_some()).count();
        // Binomial(10000, 0.3): σ ≈ 46, so ±250 is over 5σ.
        assert!((2750..=3250).contains(&hits), "{hits}");
        assert!(draw(&[], 1.0, &mut rng).is_none());
        assert!(draw(&pool, 0.0, &mut rng).is_none());
        assert!(pool.contains(&draw(&pool, 1.0, &mut rng).unwrap()));
    }
}
