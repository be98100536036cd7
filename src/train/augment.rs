//! Augmentation, deterministic per (seed, epoch, sample): random rot90, flips, and optional
//! random crops biased to contain a target. Each sample's random stream depends only on those
//! three numbers, so a run resumed mid-epoch sees exactly the batches it would have seen.

use super::data::Sample;
use super::loss::IGNORED;
use super::motion::{moved, Earlier};
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
    /// Synthetic targets and sensor artefacts added to segmentation crops.
    pub synthesis: Synthesis,
}

/// How often a training crop gets synthetic targets pasted in, or a sensor artefact.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Synthesis {
    /// Probability that a crop gets 1–3 synthetic targets (with their exact masks).
    pub targets: f64,
    /// Probability that a crop gets a sensor artefact (dead or hot row/column, stripe noise,
    /// isolated stuck pixels), which stays background in the mask (stuck pixels: as
    /// `stuck_label` says).
    pub artefacts: f64,
    /// Probability that a crop gets 1–6 isolated stuck pixels, drawn on its own (after any
    /// artefact): as one artefact kind in five, 10 fine-tuning epochs at `--artefacts 0.5`
    /// taught the nets neither to ignore them nor to keep a target next to them (runs
    /// `lite-v8-stuck` and `lite-v9-stuck-weighted` in models/README.md). Older run records
    /// have no such field and read as 0.
    #[serde(default)]
    pub stuck_pixels: f64,
    /// What the mask says where a stuck pixel was drawn (both draws). Older run records read
    /// as `Background`, what every run before the option trained with.
    #[serde(default)]
    pub stuck_label: StuckLabel,
    /// How many stuck pixels one draw puts in a crop (both draws). Older run records read as
    /// `PerCrop`, what every run before the option trained with.
    #[serde(default)]
    pub stuck_count: StuckCount,
    /// For a motion model: the probability that a moving crop (one with an earlier frame,
    /// `train::motion`) gets 1–3 *decoys*, blobs drawn as synthetic targets are but fixed in
    /// the scene (in the earlier frame at the same place) and labelled background, so that
    /// the net is charged for a target-like point that holds still against a moving scene.
    /// With decoys, no synthetic target hovers: a hovering target and a decoy would look the
    /// same. Older run records have no such field and read as 0.
    #[serde(default)]
    pub decoys: f64,
}

/// How many stuck pixels one draw puts in a crop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StuckCount {
    /// 1–6 whatever the crop's size: the density 128² crops trained with, but a quarter of it
    /// in a whole 256² tile. Nets trained on whole tiles this way (runs v25 and v26 in
    /// models/README.md) lose the dim spot of `srsnet synth`'s 96×64 seed-7 sequence (in
    /// `tests/cli.rs`'s stuck-pixel test), whose two stuck pixels are 21 per 256² (either one
    /// alone does no harm).
    #[default]
    PerCrop,
    /// 1–6 per 128² of crop (a 256² tile gets 4–24, a 64² crop still 1–6): the same density
    /// at every crop size, and still below an uncalibrated 640×512 core's tens to hundreds.
    PerArea,
}

impl StuckCount {
    /// The range one draw takes its count from, for a `w`×`h` crop.
    fn range(self, w: usize, h: usize) -> std::ops::RangeInclusive<usize> {
        let per = match self {
            StuckCount::PerCrop => 1,
            StuckCount::PerArea => ((w * h) as f64 / (128.0 * 128.0)).round().max(1.0) as usize,
        };
        per..=6 * per
    }
}

/// The training label of a stuck pixel and its 8 neighbours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StuckLabel {
    /// Background: the net is taught that a lone full-scale pixel is not a target. It learns
    /// that, and with it to drop DAUB's aircraft, which are lone full-scale pixels too (run
    /// `lite-v10-stuck-often` in models/README.md: Pd 0.99 → 0.41 on DAUB 5).
    #[default]
    Background,
    /// No loss at all there ([`crate::train::loss::IGNORED`] in the mask): the net is free
    /// to mark the pixel or not (a stream's defect map replaces it over time), and it is
    /// still charged for every target and false target elsewhere in the crop, so it learns
    /// not to let a stuck pixel switch off a target beside it (the `tests/gst.rs` failure of
    /// runs v3–v9) without learning to reject lone pixels.
    Ignored,
}

/// Adds synthetic targets and sensor artefacts to an augmented crop (intensities in [0, 1]),
/// drawing from the sample's own random stream (so resumed runs stay exact). Does nothing,
/// and draws nothing, when all its probabilities are 0.
///
/// Targets: point and extended targets of about 1–20 px above half maximum. The profile is a
/// Gaussian (σ 0.35–1.6 px) or, one time in three, an irregular cluster of 2–4 small
/// Gaussians; one time in four it is smeared along a 2–6 px line (motion). Its peak contrast
/// is a signal-to-clutter ratio of 2–8 times the local standard deviation (15×15 window).
/// The mask is where the added signal reaches half of its peak.
///
/// With a motion model's `earlier` frame (`train::motion`), each target is drawn into it too
/// where it was K frames ago (its own motion against the scene), and each artefact where the
/// sensor was (the pan): the crop's motion plane then shows what it would on a real stream.
pub fn synthesize(
    img: &mut Frame,
    mask: &mut Option<Vec<f32>>,
    cfg: &Synthesis,
    rng: &mut ChaCha8Rng,
    mut earlier: Option<&mut Earlier>,
) {
    if cfg.targets > 0.0 && mask.is_some() && rng.gen_bool(cfg.targets.clamp(0.0, 1.0)) {
        let m = mask.get_or_insert_with(Vec::new);
        for _ in 0..rng.gen_range(1..=3) {
            let added = paste_target(img, m, rng);
            if let Some(e) = earlier.as_deref_mut() {
                let by = e.target_motion(cfg.decoys == 0.0);
                e.add_moved(&added, img.width, (-by.0, -by.1));
            }
        }
    }
    if let Some(e) = earlier.as_deref_mut().filter(|_| cfg.decoys > 0.0) {
        add_decoys(img, e, cfg.decoys);
    }
    let mut stuck = Vec::new();
    if cfg.artefacts > 0.0 && rng.gen_bool(cfg.artefacts.clamp(0.0, 1.0)) {
        stuck = add_artefact(img, cfg.stuck_count, rng, earlier.as_deref_mut());
    }
    // Last, and only when asked for, so that runs without it draw exactly as before.
    if cfg.stuck_pixels > 0.0 && rng.gen_bool(cfg.stuck_pixels.clamp(0.0, 1.0)) {
        stuck.extend(add_stuck_pixels(img, cfg.stuck_count, rng, earlier));
    }
    if cfg.stuck_label == StuckLabel::Ignored && !stuck.is_empty() {
        ignore_around(mask, &stuck, img.width, img.height);
    }
}

/// Marks each pixel of `stuck` and its 8 neighbours [`IGNORED`] in the mask (creating an
/// all-background one where the sample had none). The neighbours too because the net's
/// response to a lone pixel spreads over them (its first convolutions are 3×3).
fn ignore_around(mask: &mut Option<Vec<f32>>, stuck: &[usize], w: usize, h: usize) {
    let m = mask.get_or_insert_with(|| vec![0.0; w * h]);
    for &i in stuck {
        let (x, y) = (i % w, i / w);
        for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                m[yy * w + xx] = IGNORED;
            }
        }
    }
}

/// Pastes one target; returns the signal it added (pixel, amount) before clipping.
fn paste_target(img: &mut Frame, mask: &mut [f32], rng: &mut ChaCha8Rng) -> Vec<(usize, f32)> {
    let (w, h) = (img.width, img.height);
    if w < 12 || h < 12 {
        return Vec::new();
    }
    let (cx, cy) = (rng.gen_range(4.0..(w - 5) as f64), rng.gen_range(4.0..(h - 5) as f64));
    // Blobs (dx, dy, σ, amplitude) of the profile, then an optional smear.
    let blobs: Vec<(f64, f64, f64, f64)> = if rng.gen_bool(1.0 / 3.0) {
        (0..rng.gen_range(2..=4))
            .map(|_| {
                (
                    rng.gen_range(-1.5..1.5),
                    rng.gen_range(-1.5..1.5),
                    rng.gen_range(0.4..1.0),
                    rng.gen_range(0.5..1.0),
                )
            })
            .collect()
    } else {
        vec![(0.0, 0.0, rng.gen_range(0.35..1.6), 1.0)]
    };
    let smear = if rng.gen_bool(0.25) {
        let (len, angle) = (rng.gen_range(2.0..6.0f64), rng.gen_range(0.0..std::f64::consts::PI));
        (0..=6)
            .map(|k| (k as f64 / 6.0 - 0.5) * len)
            .map(|t| (t * angle.cos(), t * angle.sin()))
            .collect()
    } else {
        vec![(0.0, 0.0)]
    };
    let r = 8isize;
    let (ix, iy) = (cx.round() as isize, cy.round() as isize);
    let mut profile = Vec::new();
    for y in (iy - r).max(0)..=(iy + r).min(h as isize - 1) {
        for x in (ix - r).max(0)..=(ix + r).min(w as isize - 1) {
            let v: f64 = smear
                .iter()
                .map(|(sx, sy)| {
                    blobs
                        .iter()
                        .map(|(dx, dy, s, a)| {
                            let d2 = (x as f64 - cx - dx - sx).powi(2) + (y as f64 - cy - dy - sy).powi(2);
                            a * (-d2 / (2.0 * s * s)).exp()
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
                / smear.len() as f64;
            profile.push((y as usize * w + x as usize, v));
        }
    }
    let top = profile.iter().map(|p| p.1).fold(0.0, f64::max);
    if top <= 0.0 {
        return Vec::new();
    }
    let contrast = (rng.gen_range(2.0..8.0) * local_std(img.plane(0), w, h, ix, iy, 7).max(0.01)).min(0.6);
    let n = w * h;
    let mut added = Vec::with_capacity(profile.len());
    for (i, v) in profile {
        let add = (contrast * v / top) as f32;
        for c in 0..img.channels {
            let p = &mut img.data[c * n + i];
            *p = (*p + add).clamp(0.0, 1.0);
        }
        if v >= 0.5 * top {
            mask[i] = 1.0;
        }
        added.push((i, add));
    }
    added
}

/// With probability `share`, 1–3 decoys: targets pasted into the crop and, unmoved, into its
/// earlier frame, left out of the mask (drawn from the earlier frame's own random stream).
fn add_decoys(img: &mut Frame, earlier: &mut Earlier, share: f64) {
    if !earlier.rng().gen_bool(share.clamp(0.0, 1.0)) {
        return;
    }
    let mut unlabelled = vec![0.0; img.width * img.height];
    for _ in 0..earlier.rng().gen_range(1..=3) {
        let added = paste_target(img, &mut unlabelled, earlier.rng());
        earlier.add_moved(&added, img.width, (0, 0));
    }
}

/// Standard deviation of `plane` in the (2r+1)² window around (x, y).
fn local_std(plane: &[f32], w: usize, h: usize, x: isize, y: isize, r: isize) -> f64 {
    let (mut s, mut s2, mut n) = (0.0, 0.0, 0.0);
    for yy in (y - r).max(0)..=(y + r).min(h as isize - 1) {
        for xx in (x - r).max(0)..=(x + r).min(w as isize - 1) {
            let v = plane[yy as usize * w + xx as usize] as f64;
            s += v;
            s2 += v * v;
            n += 1.0;
        }
    }
    let mean = s / n;
    (s2 / n - mean * mean).max(0.0).sqrt()
}

/// Draws one artefact kind; returns the pixels it made stuck (kind 4 only). A motion model's
/// `earlier` frame gets the same artefact where the sensor was, `pan` px away.
fn add_artefact(img: &mut Frame, count: StuckCount, rng: &mut ChaCha8Rng, earlier: Option<&mut Earlier>) -> Vec<usize> {
    let (w, h, n) = (img.width, img.height, img.width * img.height);
    let kind = rng.gen_range(0..5);
    if kind == 4 {
        return add_stuck_pixels(img, count, rng, earlier);
    }
    let level = stuck_level(rng);
    let (col, row) = (rng.gen_range(0..w), rng.gen_range(0..h));
    let sigma = rng.gen_range(0.005..0.03f32);
    let offsets: Vec<f32> = (0..w.max(h))
        .map(|_| rng.gen_range(-1.0f32..1.0) * sigma * 1.732)
        .collect();
    // Sensor pixel (x, y) is at (x + dx, y + dy) of `plane`.
    let draw = |plane: &mut [f32], (dx, dy): (isize, isize)| {
        let sensor = |v: usize, d: isize, n: usize| {
            let s = v as isize - d;
            (0..n as isize).contains(&s).then_some(s as usize)
        };
        for (i, p) in plane.iter_mut().enumerate() {
            let (x, y) = (sensor(i % w, dx, w), sensor(i / w, dy, h));
            match (kind, x, y) {
                (0, Some(x), Some(_)) if x == col => *p = level,
                (1, Some(_), Some(y)) if y == row => *p = level,
                (2, Some(x), Some(_)) => *p = (*p + offsets[x]).clamp(0.0, 1.0),
                (3, Some(_), Some(y)) => *p = (*p + offsets[y]).clamp(0.0, 1.0),
                _ => {}
            }
        }
    };
    for c in 0..img.channels {
        draw(&mut img.data[c * n..(c + 1) * n], (0, 0));
    }
    if let Some(e) = earlier {
        draw(&mut e.plane, e.pan);
    }
    Vec::new()
}

/// Isolated stuck pixels (as many as `count` says), each dark (0) or bright (1): an
/// uncalibrated microbolometer's defects. A lone full-scale pixel with no optical blur is not
/// a target, but every net trained before this took it for one: v2, v5 and v7 all report the
/// two stuck-bright pixels of `tests/gst.rs`'s synthetic sequence as targets (models/README.md,
/// run `lite-v7-hn-clean`). A motion model's `earlier` frame gets them `pan` px away.
/// Returns where they are (indices into a plane).
fn add_stuck_pixels(
    img: &mut Frame,
    count: StuckCount,
    rng: &mut ChaCha8Rng,
    mut earlier: Option<&mut Earlier>,
) -> Vec<usize> {
    let (w, h) = (img.width, img.height);
    let n = w * h;
    (0..rng.gen_range(count.range(w, h)))
        .map(|_| {
            let (i, level) = (rng.gen_range(0..n), stuck_level(rng));
            for c in 0..img.channels {
                img.data[c * n + i] = level;
            }
            if let Some(e) = earlier.as_deref_mut() {
                if let Some(j) = moved(i, w, h, e.pan) {
                    e.plane[j] = level;
                }
            }
            i
        })
        .collect()
}

/// What a dead (0) or hot (1) sensor element reads, equally likely.
fn stuck_level(rng: &mut ChaCha8Rng) -> f32 {
    if rng.gen_bool(0.5) {
        0.0
    } else {
        1.0
    }
}

/// The RNG for sample `index` of `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mixed =
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    ChaCha8Rng::seed_from_u64(mixed)
}

/// Returns the augmented (image, mask) of a square sample.
pub fn augment(s: &Sample, cfg: &AugmentConfig, rng: &mut ChaCha8Rng) -> (Frame, Option<Vec<f32>>) {
    augment_around(s, cfg, None, rng)
}

/// [`augment`], with the crop (if any) placed around pixel `centre` (x, y) of the sample,
/// jittered as a target-biased crop is, when `centre` is given.
pub fn augment_around(
    s: &Sample,
    cfg: &AugmentConfig,
    centre: Option<(usize, usize)>,
    rng: &mut ChaCha8Rng,
) -> (Frame, Option<Vec<f32>>) {
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
            let (cx, cy) = match centre {
                Some((x, y)) => jittered(y * n + x, n, c, rng),
                None => crop_centre(s, n, c, cfg.target_bias, rng),
            };
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

/// A `c`-crop's centre: near a random target pixel with probability `bias` (when there are targets).
fn crop_centre(s: &Sample, n: usize, c: usize, bias: f64, rng: &mut ChaCha8Rng) -> (usize, usize) {
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
                return jittered(i, n, c, rng);
            }
        }
    }
    (rng.gen_range(0..n), rng.gen_range(0..n))
}

/// Pixel `i` of an n×n sample moved by up to n/8 in x and y (clamped to the sample), so that
/// what a `c`-crop is placed around is not always at its centre; never by c/2 or more, which
/// could leave it outside the crop.
fn jittered(i: usize, n: usize, c: usize, rng: &mut ChaCha8Rng) -> (usize, usize) {
    let j = (n / 8).min(c.saturating_sub(1) / 2).max(1) as isize;
    let cx = (i % n) as isize + rng.gen_range(-j..=j);
    let cy = (i / n) as isize + rng.gen_range(-j..=j);
    (
        cx.clamp(0, n as isize - 1) as usize,
        cy.clamp(0, n as isize - 1) as usize,
    )
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
            synthesis: Synthesis::default(),
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
            synthesis: Synthesis::default(),
        };
        for i in 0..20 {
            let (img, mask) = augment(&s, &cfg, &mut sample_rng(5, 0, i));
            assert_eq!(img.width, 16);
            assert!(mask.unwrap().iter().any(|&m| m > 0.5), "crop {i} misses the target");
        }
    }

    #[test]
    fn crops_placed_around_a_pixel_contain_it() {
        // Pixel (40, 50) of the 64×64 sample holds the value 50·64 + 40; the target (1, 1) is
        // far away, so the crop follows the given centre, not the target bias.
        let s = sample(64);
        let cfg = AugmentConfig {
            crop: Some(16),
            target_bias: 1.0,
            rotate_flip: true,
            synthesis: Synthesis::default(),
        };
        for i in 0..20 {
            let (img, mask) = augment_around(&s, &cfg, Some((40, 50)), &mut sample_rng(5, 0, i));
            assert_eq!(img.width, 16);
            assert!(img.data.contains(&3240.0), "crop {i} misses the pixel");
            assert!(mask.unwrap().iter().all(|&m| m == 0.0), "crop {i} reaches the target");
        }
    }

    #[test]
    fn synthetic_targets_come_with_exact_masks_and_artefacts_stay_background() {
        let flat = || Frame {
            width: 48,
            height: 48,
            channels: 1,
            data: (0..48 * 48)
                .map(|i| 0.3 + 0.02 * ((i * 7919 % 13) as f32 / 13.0))
                .collect(),
        };
        let only_targets = Synthesis {
            targets: 1.0,
            ..Synthesis::default()
        };
        for i in 0..50 {
            let mut img = flat();
            let mut mask = Some(vec![0.0; 48 * 48]);
            synthesize(&mut img, &mut mask, &only_targets, &mut sample_rng(9, 0, i), None);
            let m = mask.unwrap();
            let area = m.iter().filter(|&&v| v > 0.5).count();
            assert!((1..=3 * 60).contains(&area), "sample {i}: mask area {area}");
            // Every mask pixel is brighter than the background it was pasted on.
            let base = flat();
            for (k, _) in m.iter().enumerate().filter(|(_, &v)| v > 0.5) {
                assert!(img.data[k] > base.data[k], "sample {i}: mask pixel {k} not brighter");
            }
        }
        let only_artefacts = Synthesis {
            artefacts: 1.0,
            ..Synthesis::default()
        };
        let mut stuck_only = 0;
        for i in 0..40 {
            let mut img = flat();
            let mut mask = Some(vec![0.0; 48 * 48]);
            synthesize(&mut img, &mut mask, &only_artefacts, &mut sample_rng(9, 1, i), None);
            assert_ne!(img, flat(), "an artefact changed the frame");
            assert!(mask.unwrap().iter().all(|&v| v == 0.0), "artefacts are not targets");
            // Stuck pixels: at most 6 pixels changed, each to full scale or to zero.
            let changed: Vec<f32> = img
                .data
                .iter()
                .zip(&flat().data)
                .filter(|(a, b)| a != b)
                .map(|p| *p.0)
                .collect();
            if changed.len() <= 6 && changed.iter().all(|&v| v == 0.0 || v == 1.0) {
                stuck_only += 1;
            }
        }
        // One kind in five; 40 draws give it at least a few times.
        assert!(
            (2..=20).contains(&stuck_only),
            "{stuck_only} of 40 draws were stuck pixels"
        );
        // Disabled: nothing drawn, nothing changed.
        let mut rng = sample_rng(9, 2, 0);
        let before = rng.clone();
        let mut img = flat();
        synthesize(&mut img, &mut None, &Synthesis::default(), &mut rng, None);
        assert_eq!((img, rng.gen::<u64>()), (flat(), before.clone().gen::<u64>()));
    }

    /// A 40×30 mid-grey frame with a faint texture (no pixel at full scale).
    fn textured_40x30() -> Frame {
        Frame {
            width: 40,
            height: 30,
            channels: 1,
            data: (0..1200).map(|i| 0.4 + 0.01 * (i % 7) as f32).collect(),
        }
    }

    #[test]
    fn stuck_pixels_come_on_their_own_draw_and_stay_background() {
        let flat = textured_40x30();
        let always = Synthesis {
            stuck_pixels: 1.0,
            ..Synthesis::default()
        };
        let mut counts = Vec::new();
        for i in 0..30 {
            let (mut img, mut mask) = (flat.clone(), Some(vec![0.0; 1200]));
            synthesize(&mut img, &mut mask, &always, &mut sample_rng(5, 0, i), None);
            let changed: Vec<f32> = img
                .data
                .iter()
                .zip(&flat.data)
                .filter(|(a, b)| a != b)
                .map(|p| *p.0)
                .collect();
            assert!(changed.iter().all(|&v| v == 0.0 || v == 1.0), "draw {i}: {changed:?}");
            assert!(mask.unwrap().iter().all(|&v| v == 0.0), "stuck pixels are not targets");
            counts.push(changed.len());
        }
        assert!(counts.iter().all(|&n| (1..=6).contains(&n)), "{counts:?}");
        assert!(counts.iter().any(|&n| n > 3), "1 to 6 per crop: {counts:?}");
        // At 0.5 about half the crops get them.
        let half = Synthesis {
            stuck_pixels: 0.5,
            ..Synthesis::default()
        };
        let hit = (0..100)
            .filter(|&i| {
                let mut img = flat.clone();
                synthesize(&mut img, &mut None, &half, &mut sample_rng(5, 1, i), None);
                img != flat
            })
            .count();
        assert!((30..=70).contains(&hit), "{hit} of 100");
        // A run record written before the options existed reads as "no stuck pixels",
        // labelled background.
        let old: Synthesis = serde_json::from_str(r#"{"targets":0.8,"artefacts":0.5}"#).unwrap();
        assert_eq!((old.stuck_pixels, old.stuck_label), (0.0, StuckLabel::Background));
    }

    #[test]
    fn ignored_stuck_pixels_are_ignored_with_their_neighbours_and_drawn_the_same() {
        let flat = textured_40x30();
        let background = Synthesis {
            targets: 1.0,
            artefacts: 1.0,
            stuck_pixels: 1.0,
            ..Synthesis::default()
        };
        let ignored = Synthesis {
            stuck_label: StuckLabel::Ignored,
            ..background
        };
        for i in 0..30 {
            let (mut a, mut ma) = (flat.clone(), Some(vec![0.0; 1200]));
            synthesize(&mut a, &mut ma, &background, &mut sample_rng(6, 0, i), None);
            // The same draws from the same stream: only the mask differs.
            let (mut b, mut mb) = (flat.clone(), Some(vec![0.0; 1200]));
            synthesize(&mut b, &mut mb, &ignored, &mut sample_rng(6, 0, i), None);
            assert_eq!(a, b, "draw {i}: the label changed the image");
            let (ma, mb) = (ma.unwrap(), mb.unwrap());
            // Full-scale pixels not on a dead or hot row or column (artefact kinds 0 and 1).
            let full = |k: usize| a.data[k] == 0.0 || a.data[k] == 1.0;
            let line = |k: usize| (0..40).all(|x| full(k / 40 * 40 + x)) || (0..30).all(|y| full(y * 40 + k % 40));
            let stuck: Vec<usize> = (0..1200).filter(|&k| full(k) && !line(k)).collect();
            assert!(!stuck.is_empty(), "draw {i}: no stuck pixel");
            let near = |k: usize, set: &mut dyn Iterator<Item = usize>| {
                let (x, y) = ((k % 40) as isize, (k / 40) as isize);
                let mut hit = false;
                for s in set {
                    hit |= ((s % 40) as isize - x).abs() <= 1 && ((s / 40) as isize - y).abs() <= 1;
                }
                hit
            };
            for k in 0..1200 {
                if mb[k] == IGNORED {
                    // Only next to a full-scale pixel (a stuck one may sit on a dead line).
                    assert!(near(k, &mut (0..1200).filter(|&s| full(s))), "draw {i}, pixel {k}");
                } else {
                    assert_eq!(mb[k], ma[k], "draw {i}, pixel {k}: a label changed");
                    assert!(!near(k, &mut stuck.iter().copied()), "draw {i}, pixel {k} not ignored");
                }
            }
        }
        // A sample without a mask gets one: background but for the ignored pixels.
        let only_stuck = Synthesis {
            stuck_pixels: 1.0,
            stuck_label: StuckLabel::Ignored,
            ..Synthesis::default()
        };
        let (mut img, mut mask) = (flat.clone(), None);
        synthesize(&mut img, &mut mask, &only_stuck, &mut sample_rng(6, 1, 0), None);
        let m = mask.expect("a mask for the ignored pixels");
        let ignored_px = m.iter().filter(|&&v| v == IGNORED).count();
        assert!((1..=54).contains(&ignored_px) && m.iter().all(|&v| v == 0.0 || v == IGNORED));
    }

    #[test]
    fn stuck_pixels_per_area_keep_their_density_in_larger_crops() {
        let mid_grey = |w: usize, h: usize| Frame {
            width: w,
            height: h,
            channels: 1,
            data: vec![0.5; w * h],
        };
        let cfg = |count| Synthesis {
            stuck_pixels: 1.0,
            stuck_count: count,
            ..Synthesis::default()
        };
        // Stuck pixels may land on each other, so a draw changes at most its count.
        let counts = |w: usize, h: usize, count: StuckCount| -> Vec<usize> {
            (0..40)
                .map(|i| {
                    let mut img = mid_grey(w, h);
                    synthesize(&mut img, &mut None, &cfg(count), &mut sample_rng(8, 0, i), None);
                    img.data.iter().filter(|&&v| v != 0.5).count()
                })
                .collect()
        };
        // A whole 256² tile: 4–24 per area (the density of 128² crops), 1–6 per crop.
        let per_area = counts(256, 256, StuckCount::PerArea);
        assert!(per_area.iter().all(|&n| (4..=24).contains(&n)), "{per_area:?}");
        assert!(per_area.iter().any(|&n| n > 12), "{per_area:?}");
        let per_crop = counts(256, 256, StuckCount::PerCrop);
        assert!(per_crop.iter().all(|&n| (1..=6).contains(&n)), "{per_crop:?}");
        // A crop of 128² or smaller gets 1–6 either way, drawn the same.
        assert_eq!(counts(96, 64, StuckCount::PerArea), counts(96, 64, StuckCount::PerCrop));
        // Run records written before the option read as per crop; the option parses by name.
        let old: Synthesis = serde_json::from_str(r#"{"targets":0.8,"artefacts":0.5,"stuck_pixels":0.6}"#).unwrap();
        assert_eq!(old.stuck_count, StuckCount::PerCrop);
        let new: Synthesis =
            serde_json::from_str(r#"{"targets":0.8,"artefacts":0.5,"stuck_count":"per-area"}"#).unwrap();
        assert_eq!(new.stuck_count, StuckCount::PerArea);
        assert!(serde_json::from_str::<Synthesis>(r#"{"stuck_count":"many"}"#).is_err());
    }
}
