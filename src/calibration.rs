//! Camera calibration profiles: two-point non-uniformity correction (per-pixel gain and
//! offset) and a bad-pixel map, stored as one safetensors file (format in calibration/README.md),
//! and `srsnet calibrate`, which builds a profile from cold and hot flat-field recordings.

use crate::model::WeightStore;
use crate::robust::median;
use crate::tensor_file::write_safetensors;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Value of the `format` metadata key of a profile file.
pub const FORMAT: &str = "srsnet-calibration/1";

/// A profile for one sensor size. Corrected value = `gain · raw + offset`, in raw units
/// (0–255 for 8-bit, 0–65535 for 16-bit); flagged pixels are then replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Sensor columns.
    pub width: usize,
    /// Sensor rows.
    pub height: usize,
    /// Per-pixel gain, row-major.
    pub gain: Vec<f32>,
    /// Per-pixel offset in raw units, row-major.
    pub offset: Vec<f32>,
    /// true where the pixel is bad (dead, stuck, or too noisy).
    pub bad: Vec<bool>,
    /// How the profile was made (shown in messages).
    pub description: String,
}

impl Profile {
    /// The identity profile (no correction, no bad pixels).
    pub fn identity(width: usize, height: usize) -> Self {
        let n = width * height;
        Self {
            width,
            height,
            gain: vec![1.0; n],
            offset: vec![0.0; n],
            bad: vec![false; n],
            description: "identity".into(),
        }
    }

    /// Reads a profile file, checking its format, size and values (finite gains and offsets).
    pub fn load(path: &Path) -> Result<Self> {
        let store = WeightStore::open(path)?;
        let meta = store.metadata();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            bail!(
                "{} is not a calibration profile (metadata `format` should be `{FORMAT}`)",
                path.display()
            );
        }
        let dim = |k: &str| -> Result<usize> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{}: metadata `{k}` missing or not a number", path.display()))
        };
        let (width, height) = (dim("width")?, dim("height")?);
        crate::limits::check_frame_size(&format!("calibration profile {}", path.display()), width, height)?;
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = store.get(name, &[height, width], DType::F32, &Device::Cpu)?;
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let bad = get("bad_pixels")?.into_iter().map(|v| v != 0.0).collect();
        let (gain, offset) = (get("gain")?, get("offset")?);
        for (name, v) in [("gain", &gain), ("offset", &offset)] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                bail!(
                    "{}: `{name}` of pixel ({}, {}) is {}; a profile must hold finite numbers (rebuild it with srsnet calibrate)",
                    path.display(),
                    i % width,
                    i / width,
                    v[i]
                );
            }
        }
        Ok(Self {
            width,
            height,
            gain,
            offset,
            bad,
            description: meta.get("description").cloned().unwrap_or_default(),
        })
    }

    /// Writes the profile as a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let shape = (self.height, self.width);
        let bad: Vec<f32> = self.bad.iter().map(|&b| b as u8 as f32).collect();
        let tensors = [
            ("gain", Tensor::from_vec(self.gain.clone(), shape, &Device::Cpu)?),
            ("offset", Tensor::from_vec(self.offset.clone(), shape, &Device::Cpu)?),
            (
                "bad_pixels",
                Tensor::from_vec(bad, shape, &Device::Cpu)?.to_dtype(DType::U8)?,
            ),
        ];
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("width".to_string(), self.width.to_string());
        meta.insert("height".to_string(), self.height.to_string());
        meta.insert("description".to_string(), self.description.clone());
        write_safetensors(
            path,
            tensors.iter().map(|(n, t)| (*n, t)),
            Some(meta),
            "calibration profile",
        )
    }

    /// Applies the correction to a frame of raw values in place.
    pub fn apply(&self, width: usize, height: usize, values: &mut [f32]) -> Result<()> {
        if (width, height) != (self.width, self.height) {
            bail!(
                "calibration profile `{}` is for {}×{} frames, this frame is {width}×{height}",
                self.description,
                self.width,
                self.height
            );
        }
        for ((v, g), o) in values.iter_mut().zip(&self.gain).zip(&self.offset) {
            *v = *v * g + o;
        }
        replace_bad_pixels(values, width, height, &self.bad);
        Ok(())
    }
}

/// Replaces each flagged pixel by the median of the valid pixels of its 3×3 neighbourhood
/// (5×5 when none of the 3×3 is valid; left as is when neither has a valid pixel).
pub fn replace_bad_pixels(values: &mut [f32], w: usize, h: usize, bad: &[bool]) {
    // In place: only bad pixels are written and only valid ones are read, so no copy of the
    // frame is needed.
    let mut neigh = Vec::with_capacity(24);
    for i in (0..w * h).filter(|&i| bad[i]) {
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        for r in [1isize, 2] {
            neigh.clear();
            for dy in -r..=r {
                for dx in -r..=r {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 && nx < w as isize && ny < h as isize {
                        let j = ny as usize * w + nx as usize;
                        if !bad[j] {
                            neigh.push(values[j]);
                        }
                    }
                }
            }
            if !neigh.is_empty() {
                neigh.sort_by(|a, b| a.total_cmp(b));
                let m = neigh.len();
                values[i] = if m % 2 == 1 {
                    neigh[m / 2]
                } else {
                    0.5 * (neigh[m / 2 - 1] + neigh[m / 2])
                };
                break;
            }
        }
    }
}

/// Per-pixel temporal mean and standard deviation of a flat-field recording, accumulated one
/// frame at a time, so that a recording never has to be held whole (32 frames of 640×512 are
/// 42 MB as f32, a third of `srsnet run`'s whole footprint).
#[derive(Debug, Clone)]
pub struct FlatStats {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    frames: usize,
}

impl FlatStats {
    /// No frames yet, of `pixels` pixels each.
    pub fn new(pixels: usize) -> Self {
        Self {
            sum: vec![0.0; pixels],
            sum_sq: vec![0.0; pixels],
            frames: 0,
        }
    }

    /// The statistics of `frames` (all of one size).
    pub fn of(frames: &[Vec<f32>]) -> Self {
        let mut s = Self::new(frames.first().map_or(0, Vec::len));
        frames.iter().for_each(|f| s.add(f));
        s
    }

    /// Adds one frame (raw units; the size given to [`FlatStats::new`]).
    pub fn add(&mut self, frame: &[f32]) {
        assert_eq!(frame.len(), self.sum.len(), "flat-field frame size");
        for ((s, q), &v) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(frame) {
            *s += v as f64;
            *q += (v as f64) * (v as f64);
        }
        self.frames += 1;
    }

    /// (mean, standard deviation) per pixel. In f64 the one-pass variance loses nothing that
    /// matters here: raw values are at most 65535 and a recording a few dozen frames.
    fn mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let k = self.frames.max(1) as f64;
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(&s, &q)| {
                let m = s / k;
                (m as f32, (q / k - m * m).max(0.0).sqrt() as f32)
            })
            .unzip()
    }
}

/// Two-point NUC from flat-field frames of a cold and a hot uniform scene (raw units).
///
/// Each pixel is mapped so that its cold and hot means land on the frame-wide cold and hot
/// means: `gain = (H̄ − C̄)/(h − c)`, `offset = C̄ − gain·c`. A pixel is flagged bad when its
/// response `h − c` is below `dead_fraction` of the median response (dead or stuck), deviates
/// from the median by more than `k_mad` median absolute deviations, or its temporal noise
/// exceeds `k_noise` times the median noise (blinking).
pub fn two_point(width: usize, height: usize, cold: &[Vec<f32>], hot: &[Vec<f32>]) -> Result<Profile> {
    two_point_from(width, height, &FlatStats::of(cold), &FlatStats::of(hot))
}

/// [`two_point`] from the recordings' accumulated statistics.
pub fn two_point_from(width: usize, height: usize, cold: &FlatStats, hot: &FlatStats) -> Result<Profile> {
    const DEAD_FRACTION: f32 = 0.2;
    const K_MAD: f32 = 8.0;
    const K_NOISE: f32 = 6.0;
    if cold.frames == 0 || hot.frames == 0 {
        bail!("calibration needs at least one cold and one hot frame");
    }
    let (c, c_noise) = cold.mean_std();
    let (h, h_noise) = hot.mean_std();
    let response: Vec<f32> = h.iter().zip(&c).map(|(a, b)| a - b).collect();
    let med = median(&mut response.clone());
    if med <= 0.0 {
        bail!("the hot recording is not warmer than the cold one (median response {med}): were they swapped?");
    }
    let abs_dev: Vec<f32> = response.iter().map(|r| (r - med).abs()).collect();
    let mad = median(&mut abs_dev.clone()).max(med * 1e-3);
    let noise: Vec<f32> = c_noise.iter().zip(&h_noise).map(|(a, b)| a.max(*b)).collect();
    let noise_med = median(&mut noise.clone()).max(1e-6);
    let bad: Vec<bool> = (0..width * height)
        .map(|i| {
            response[i] < DEAD_FRACTION * med
                || abs_dev[i] > K_MAD * mad
                || (cold.frames > 1 && noise[i] > K_NOISE * noise_med)
        })
        .collect();
    let (c_bar, h_bar) = (mean_of(&c, &bad), mean_of(&h, &bad));
    let mut gain = vec![1f32; width * height];
    let mut offset = vec![0f32; width * height];
    for i in (0..width * height).filter(|&i| !bad[i]) {
        gain[i] = (h_bar - c_bar) / response[i];
        offset[i] = c_bar - gain[i] * c[i];
    }
    let flagged = bad.iter().filter(|&&b| b).count();
    Ok(Profile {
        width,
        height,
        gain,
        offset,
        bad,
        description: format!("two-point NUC, {flagged} bad pixels"),
    })
}

fn mean_of(v: &[f32], bad: &[bool]) -> f32 {
    let (s, n) = v
        .iter()
        .zip(bad)
        .filter(|(_, &b)| !b)
        .fold((0f64, 0usize), |(s, n), (x, _)| (s + *x as f64, n + 1));
    (s / n.max(1) as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_replacement_ignores_other_bad_pixels() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0, 8.0, 9.0];
        let mut bad = vec![false; 9];
        bad[4] = true;
        bad[0] = true;
        replace_bad_pixels(&mut v, 3, 3, &bad);
        // Valid neighbours of the centre: 2, 3, 4, 6, 7, 8, 9 (1 is flagged too) → median 6.
        assert_eq!(v[4], 6.0);
        // The corner's valid neighbours: 2, 4 → 3.
        assert_eq!(v[0], 3.0);
    }
}
