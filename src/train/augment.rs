//! Augmentation, deterministic per (seed, epoch, sample): random rot90, flips, and optional
//! random crops biased to contain a target. Each sample's random stream depends only on those
//! three numbers, so a run resumed mid-epoch sees exactly the batches it would have seen.

use super::data::Sample;
use crate::image_io::Frame;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy)]
/// Training-time augmentation.
pub struct AugmentConfig {
    /// Side of the square crop taken after resizing; `None` trains on whole (resized) images.
    pub crop: Option<usize>,
    /// Probability that a crop is centred near a target pixel rather than anywhere.
    pub target_bias: f64,
    /// Random rot90 and flips.
    pub rotate_flip: bool,
}

/// The RNG for sample `index` of `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mixed =
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    ChaCha8Rng::seed_from_u64(mixed)
}

/// Returns the augmented (image, mask) of a square sample.
pub fn augment(s: &Sample, cfg: &AugmentConfig, rng: &mut ChaCha8Rng) -> (Frame, Option<Vec<f32>>) {
    let n = s.image.width;
    debug_assert_eq!(n, s.image.height, "augmentation expects resized (square) samples");
    // RandomRotate90 (p 0.5, k ∈ 0..4) then Flip (p 0.5: horizontal, vertical or both), as the reference.
    let k = if cfg.rotate_flip && rng.gen_bool(0.5) {
        rng.gen_range(0..4)
    } else {
        0
    };
    let flip = if cfg.rotate_flip && rng.gen_bool(0.5) {
        rng.gen_range(1..4)
    } else {
        0
    };
    let (x0, y0, side) = match cfg.crop {
        Some(c) if c < n => {
            let (cx, cy) = crop_centre(s, n, cfg.target_bias, rng);
            let x0 = cx.saturating_sub(c / 2).min(n - c);
            let y0 = cy.saturating_sub(c / 2).min(n - c);
            (x0, y0, c)
        }
        _ => (0, 0, n),
    };
    // Output pixel (x, y) reads source pixel map(x, y) of the crop window, after flip and rotation.
    let map = |x: usize, y: usize| -> usize {
        let (mut x, mut y) = (x, y);
        if flip & 1 != 0 {
            x = side - 1 - x;
        }
        if flip & 2 != 0 {
            y = side - 1 - y;
        }
        for _ in 0..k {
            (x, y) = (y, side - 1 - x);
        }
        (y0 + y) * n + x0 + x
    };
    let pick = |plane: &[f32]| -> Vec<f32> { (0..side * side).map(|i| plane[map(i % side, i / side)]).collect() };
    let data = (0..s.image.channels).flat_map(|c| pick(s.image.plane(c))).collect();
    let image = Frame {
        width: side,
        height: side,
        channels: s.image.channels,
        data,
    };
    (image, s.mask.as_ref().map(|m| pick(m)))
}

/// A crop centre: near a random target pixel with probability `bias` (when there are targets).
fn crop_centre(s: &Sample, n: usize, bias: f64, rng: &mut ChaCha8Rng) -> (usize, usize) {
    if let Some(mask) = &s.mask {
        if rng.gen_bool(bias.clamp(0.0, 1.0)) {
            let positives: Vec<usize> = mask
                .iter()
                .enumerate()
                .filter(|(_, &v)| v > 0.5)
                .map(|(i, _)| i)
                .collect();
            if !positives.is_empty() {
                let i = positives[rng.gen_range(0..positives.len())];
                // Jitter so the target is not always at the centre of the crop.
                let j = (n / 8).max(1) as isize;
                let cx = (i % n) as isize + rng.gen_range(-j..=j);
                let cy = (i / n) as isize + rng.gen_range(-j..=j);
                return (
                    cx.clamp(0, n as isize - 1) as usize,
                    cy.clamp(0, n as isize - 1) as usize,
                );
            }
        }
    }
    (rng.gen_range(0..n), rng.gen_range(0..n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Sample {
        let data: Vec<f32> = (0..n * n).map(|v| v as f32).collect();
        let mut mask = vec![0.0; n * n];
        mask[n + 1] = 1.0;
        Sample {
            name: "t".into(),
            image: Frame {
                width: n,
                height: n,
                channels: 1,
                data,
            },
            mask: Some(mask),
        }
    }

    #[test]
    fn deterministic_and_a_permutation() {
        let s = sample(8);
        let cfg = AugmentConfig {
            crop: None,
            target_bias: 0.0,
            rotate_flip: true,
        };
        let a = augment(&s, &cfg, &mut sample_rng(1, 2, 3));
        let b = augment(&s, &cfg, &mut sample_rng(1, 2, 3));
        assert_eq!(a.0, b.0);
        let mut v = a.0.data.clone();
        v.sort_by(|x, y| x.total_cmp(y));
        assert_eq!(v, s.image.data, "rotation/flip only moves pixels");
        // The mask moves with the image.
        let i = a.1.unwrap().iter().position(|&m| m > 0.5).unwrap();
        assert_eq!(a.0.data[i], 9.0);
    }

    #[test]
    fn biased_crops_contain_the_target() {
        let s = sample(64);
        let cfg = AugmentConfig {
            crop: Some(16),
            target_bias: 1.0,
            rotate_flip: false,
        };
        for i in 0..20 {
            let (img, mask) = augment(&s, &cfg, &mut sample_rng(5, 0, i));
            assert_eq!(img.width, 16);
            assert!(mask.unwrap().iter().any(|&m| m > 0.5), "crop {i} misses the target");
        }
    }
}
