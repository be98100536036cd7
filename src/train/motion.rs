//! Motion planes for a motion model's training crops (`crate::temporal`).
//!
//! A crop's motion plane is the crop minus an *earlier frame*: the frame K back, aligned by the
//! scene's shift, which the synthesis (`augment::synthesize`) draws into as well, so that every
//! pasted target and sensor artefact has the motion it would have had:
//!
//! - the scene itself: aligned, it cancels out, up to a registration error of a fraction of a
//!   pixel and two frames' worth of temporal noise (the residual real sequences show:
//!   `examples/motion_plane_stats` measures σ ≈ 0.008–0.010 on DAUB 1–4 at K = 5, where the
//!   aircraft read 0.12–0.37);
//! - a synthetic target moves its own way against the scene (0–12 px over the K frames, one
//!   in five not at all, as a hovering aircraft or one the camera tracks), so the earlier frame
//!   holds it where it was: a dipole in the plane, or nothing;
//! - a sensor artefact (a stuck pixel, a dead row, stripe noise) is fixed to the sensor, so on
//!   a panning camera it moved against the scene by the pan: the earlier frame holds it `pan`
//!   px away, and a stuck pixel reads as a mover. The net must learn it by its look.
//!
//! Crops of a real sequence (loaded with their measured motion planes) keep their own
//! earlier frame (crop − plane); still images get a simulated one. Half of all crops train
//! as still images (a zero plane): single images, the first K frames of a stream, and frames
//! the registration cannot explain are all still, and the net must not depend on motion to
//! find a target.

use crate::image_io::Frame;
use crate::stream::register;
use crate::temporal::with_motion_plane;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Share of the crops that train as still images (a zero motion plane).
const STILL_SHARE: f64 = 0.5;
/// Share of the simulated pans that are a fixed camera.
const FIXED_CAMERA_SHARE: f64 = 0.3;
/// Largest pan over the K frames, px per axis.
const MAX_PAN: isize = 12;
/// Largest registration error of a simulated earlier frame, px per axis.
const MAX_MISREGISTRATION: f64 = 0.3;
/// Range of the temporal noise σ of a simulated earlier frame (intensity units), around the
/// ≈ 0.009 real sequences show once aligned (the difference of two frames' noise).
const NOISE_SIGMA: std::ops::Range<f32> = 0.004..0.02;
/// Share of synthetic targets that do not move against the scene.
const HOVERING_SHARE: f64 = 0.2;
/// Longest motion of a synthetic target against the scene over the K frames, px.
const MAX_TARGET_MOTION: f64 = 12.0;

/// The frame K back of a training crop, aligned with it by the scene's shift.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// Its gray plane, the crop's size.
    pub plane: Vec<f32>,
    /// The camera's pan over the K frames, px: a sensor-fixed artefact at pixel q of the crop
    /// is at q + pan in the earlier frame.
    pub pan: (isize, isize),
    /// The stream the motion draws come from (its own, so that the crop's other draws are
    /// those a single-frame run makes).
    rng: ChaCha8Rng,
}

impl Earlier {
    /// Decides a gray crop's motion and takes its motion plane off it, if it has one (a real
    /// sequence's): `None` when the crop trains as a still image.
    pub fn draw(crop: &mut Frame, mut rng: ChaCha8Rng) -> Option<Earlier> {
        let measured = (crop.channels == 2).then(|| crop.plane(1).to_vec());
        if measured.is_some() {
            crop.data.truncate(crop.width * crop.height);
            crop.channels = 1;
        }
        if rng.gen_bool(STILL_SHARE) {
            return None;
        }
        let pan = if rng.gen_bool(FIXED_CAMERA_SHARE) {
            (0, 0)
        } else {
            (rng.gen_range(-MAX_PAN..=MAX_PAN), rng.gen_range(-MAX_PAN..=MAX_PAN))
        };
        let plane = match measured {
            Some(motion) => crop.plane(0).iter().zip(&motion).map(|(c, m)| c - m).collect(),
            None => simulated(crop, &mut rng),
        };
        Some(Earlier { plane, pan, rng })
    }

    /// A synthetic target's motion against the scene over the K frames, px (integer: its
    /// profile is pasted again whole, shifted); one in five does not move when `may_hover`.
    pub fn target_motion(&mut self, may_hover: bool) -> (isize, isize) {
        if may_hover && self.rng.gen_bool(HOVERING_SHARE) {
            return (0, 0);
        }
        let (len, angle) = (
            self.rng.gen_range(1.0..=MAX_TARGET_MOTION),
            self.rng.gen_range(0.0..std::f64::consts::TAU),
        );
        (
            (len * angle.cos()).round() as isize,
            (len * angle.sin()).round() as isize,
        )
    }

    /// The stream the motion draws come from.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Adds `values` (pixel index of a `w`-wide crop, amount) to the earlier frame, each moved
    /// by `by` px; what falls outside is dropped.
    pub fn add_moved(&mut self, values: &[(usize, f32)], w: usize, by: (isize, isize)) {
        let h = self.plane.len() / w;
        for &(i, v) in values {
            if let Some(j) = moved(i, w, h, by) {
                let p = &mut self.plane[j];
                *p = (*p + v).clamp(0.0, 1.0);
            }
        }
    }
}

/// Pixel `i` of a `w`×`h` plane moved by `by` px, if still inside.
pub fn moved(i: usize, w: usize, h: usize, (dx, dy): (isize, isize)) -> Option<usize> {
    let (x, y) = ((i % w) as isize + dx, (i / w) as isize + dy);
    ((0..w as isize).contains(&x) && (0..h as isize).contains(&y)).then(|| y as usize * w + x as usize)
}

/// The crop with its motion plane appended: the crop minus its earlier frame, or a zero plane
/// for a still image.
pub fn attach(crop: &Frame, earlier: Option<&Earlier>) -> Frame {
    match earlier {
        Some(e) => {
            let motion: Vec<f32> = crop.plane(0).iter().zip(&e.plane).map(|(c, o)| c - o).collect();
            with_motion_plane(crop, &motion)
        }
        None => with_motion_plane(crop, &vec![0.0; crop.width * crop.height]),
    }
}

/// A still crop's earlier frame: the same scene, registered to within a fraction of a pixel
/// (sampled at a small random offset), with temporal noise of its own.
fn simulated(crop: &Frame, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let (w, h) = (crop.width, crop.height);
    let (ex, ey) = (
        rng.gen_range(-MAX_MISREGISTRATION..=MAX_MISREGISTRATION),
        rng.gen_range(-MAX_MISREGISTRATION..=MAX_MISREGISTRATION),
    );
    let sigma = rng.gen_range(NOISE_SIGMA);
    let noise = Normal::new(0.0, sigma).expect("a positive σ");
    let plane = crop.plane(0);
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f64 + ex, (i / w) as f64 + ey);
            (register::sample(plane, w, h, x, y) + noise.sample(rng)).clamp(0.0, 1.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn textured(w: usize, h: usize) -> Frame {
        let data = (0..w * h)
            .map(|i| 0.4 + 0.1 * ((i % w) as f32 * 0.3).sin() * ((i / w) as f32 * 0.2).cos())
            .collect();
        Frame::new(w, h, 1, data).unwrap()
    }

    #[test]
    fn half_the_crops_are_still_and_the_others_hold_noise_at_the_measured_level() {
        let (mut still, mut sigmas) = (0, Vec::new());
        for seed in 0..200 {
            let mut crop = textured(32, 32);
            match Earlier::draw(&mut crop, ChaCha8Rng::seed_from_u64(seed)) {
                None => still += 1,
                Some(e) => {
                    let plane = attach(&crop, Some(&e));
                    let m = plane.plane(1);
                    let rms = (m.iter().map(|v| v * v).sum::<f32>() / m.len() as f32).sqrt();
                    sigmas.push(rms);
                }
            }
        }
        assert!((80..120).contains(&still), "{still} of 200 still");
        // Noise σ 0.004–0.02 and a misregistration ≤ 0.3 px of a gentle texture: small.
        assert!(sigmas.iter().all(|&s| (0.003..0.05).contains(&s)), "{sigmas:?}");
    }

    #[test]
    fn a_sequence_crop_keeps_its_measured_plane_when_it_moves() {
        let base = textured(16, 16);
        let measured: Vec<f32> = (0..256).map(|i| (i % 7) as f32 * 0.01).collect();
        let (mut kept, mut zeroed) = (0, 0);
        for seed in 0..40 {
            let mut crop = with_motion_plane(&base, &measured);
            let e = Earlier::draw(&mut crop, ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(crop.channels, 1, "the plane is taken off the crop");
            let out = attach(&crop, e.as_ref());
            match e {
                Some(_) => {
                    kept += 1;
                    for (a, b) in out.plane(1).iter().zip(&measured) {
                        assert!((a - b).abs() < 1e-6);
                    }
                }
                None => {
                    zeroed += 1;
                    assert!(out.plane(1).iter().all(|&v| v == 0.0));
                }
            }
        }
        assert!(kept > 5 && zeroed > 5, "{kept} kept, {zeroed} still");
    }

    #[test]
    fn moved_values_land_where_the_shift_says_and_fall_off_the_edge() {
        assert_eq!(moved(0, 4, 3, (1, 2)), Some(9));
        assert_eq!(moved(3, 4, 3, (1, 0)), None);
        assert_eq!(moved(5, 4, 3, (-1, -1)), Some(0));
    }
}
