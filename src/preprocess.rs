//! The preprocessing spec a weights file carries, and its application to a frame: intensity
//! normalisation and the geometry policy (pad to a multiple of 8, or resize).

use crate::image_io::Frame;
use crate::temporal::MotionInput;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// How a frame of any size becomes a network input whose sides are multiples of 8.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Geometry {
    /// Pad right and bottom to a multiple of `multiple` by repeating the edge pixels, then crop
    /// the output back. Keeps native resolution, so a 1-pixel target stays 1 pixel: the default
    /// for our own models. Edge replication (not zeros) avoids an artificial step that the
    /// network could answer with false alarms along the border.
    Pad {
        /// Sides are padded up to a multiple of this (a multiple of 8).
        multiple: usize,
    },
    /// Resize (bilinear, half-pixel centres as OpenCV's INTER_LINEAR used by albumentations) to
    /// `width`×`height`, and resize the logits back. What the reference does (Resize(256, 256)).
    Resize {
        /// Network input columns.
        width: usize,
        /// Network input rows.
        height: usize,
    },
}

/// Intensity normalisation and geometry, stored in every weights file.
/// Network input = `((v − mean_c) / std_c) · post_scale`, with v the intensity in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Input channels.
    pub channels: usize,
    /// Per-channel mean subtracted.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by.
    pub std: Vec<f32>,
    /// 1 for our models; 1/255 for reference checkpoints, whose loader divides by 255 a second
    /// time after ImageNet normalisation (a bug we must reproduce to use their weights).
    pub post_scale: f32,
    /// How the frame size becomes a network size.
    pub geometry: Geometry,
    /// A motion model's temporal plane (`crate::temporal`), which follows the image planes
    /// as one more input plane; `None` for single-frame models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<MotionInput>,
}

impl PreprocessSpec {
    /// The reference implementation's pipeline: RGB, ImageNet mean/std, the extra /255, 256×256 resize.
    pub fn reference() -> Self {
        Self {
            channels: 3,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            post_scale: 1.0 / 255.0,
            geometry: Geometry::Resize {
                width: 256,
                height: 256,
            },
            motion: None,
        }
    }

    /// Our default for 1-channel models: centred, unit-ish scale, native resolution.
    pub fn gray_default() -> Self {
        Self {
            channels: 1,
            mean: vec![0.5],
            std: vec![0.25],
            post_scale: 1.0,
            geometry: Geometry::Pad { multiple: 8 },
            motion: None,
        }
    }

    /// Checks the spec (lengths, positive scales, sizes that are multiples of 8).
    pub fn validate(&self) -> Result<()> {
        if self.mean.len() != self.channels || self.std.len() != self.channels {
            bail!("preprocess: mean and std need {} values each", self.channels);
        }
        if self.std.iter().any(|&s| s <= 0.0) || self.post_scale <= 0.0 {
            bail!("preprocess: std and post_scale must be positive");
        }
        if let Some(m) = &self.motion {
            m.validate()?;
        }
        match self.geometry {
            Geometry::Pad { multiple } if multiple == 0 || multiple % 8 != 0 => {
                bail!("preprocess: pad multiple must be a positive multiple of 8, found {multiple}")
            }
            Geometry::Resize { width, height } if width % 8 != 0 || height % 8 != 0 || width == 0 || height == 0 => {
                bail!("preprocess: resize target {width}×{height} must have sides that are non-zero multiples of 8")
            }
            _ => Ok(()),
        }
    }

    /// The network's input planes: the image's channels, and the motion plane if any.
    pub fn input_planes(&self) -> usize {
        self.channels + usize::from(self.motion.is_some())
    }

    /// Channel `c`'s intensities in [0, 1] as network input values: the one normalisation
    /// used by inference, streaming, evaluation and training.
    pub fn normalise<'a>(&'a self, c: usize, plane: &'a [f32]) -> impl Iterator<Item = f32> + 'a {
        let (m, s, k) = (self.mean[c], self.std[c], self.post_scale);
        plane.iter().map(move |v| (v - m) / s * k)
    }

    /// `frame`'s planes as network input values at the frame's own size (no geometry): the
    /// image channels normalised, then a motion model's motion plane. A motion model takes the
    /// frame's image planes followed by its motion plane (`crate::temporal`); a frame without
    /// one is a still image, whose motion plane is zero.
    pub fn normalise_frame(&self, frame: &Frame) -> Result<Vec<f32>> {
        self.check_planes(frame)?;
        let n = frame.width * frame.height;
        let mut data = Vec::with_capacity(self.input_planes() * n);
        for c in 0..self.channels {
            data.extend(self.normalise(c, frame.plane(c)));
        }
        if self.motion.is_some() {
            if frame.channels == self.channels {
                data.resize(data.len() + n, 0.0);
            } else {
                // A difference of intensities: scaled as the image is, without its mean.
                let k = self.post_scale / self.std[0];
                data.extend(frame.plane(self.channels).iter().map(|v| v * k));
            }
        }
        Ok(data)
    }

    /// Refuses a frame whose plane count the model cannot take.
    fn check_planes(&self, frame: &Frame) -> Result<()> {
        let still = self.motion.is_some() && frame.channels == self.channels;
        if frame.channels != self.input_planes() && !still {
            bail!(
                "frame has {} planes, the model's preprocessing expects {}{}",
                frame.channels,
                self.channels,
                if self.motion.is_some() {
                    " (and optionally its motion plane)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    /// The network input (1, C, H', W') for `frame`, and how to map outputs back.
    pub fn prepare(&self, frame: &Frame, dtype: DType, device: &Device) -> Result<(Tensor, Restore)> {
        let (data, (nw, nh), restore) = self.prepare_values(frame)?;
        let t = Tensor::from_vec(data, (1, self.input_planes(), nh, nw), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?;
        Ok((t, restore))
    }

    /// The network input as (planes, height, width) row-major f32 values, its size
    /// (width, height), and how to map the output back.
    pub fn prepare_values(&self, frame: &Frame) -> Result<(Vec<f32>, (usize, usize), Restore)> {
        self.check_planes(frame)?;
        let (w, h) = (frame.width, frame.height);
        let (nw, nh, restore) = match self.geometry {
            Geometry::Pad { multiple } => (
                w.div_ceil(multiple) * multiple,
                h.div_ceil(multiple) * multiple,
                Restore::Crop,
            ),
            Geometry::Resize { width, height } => (width, height, Restore::Resize),
        };
        let planes: Vec<f32> = (0..frame.channels)
            .flat_map(|c| match restore {
                Restore::Crop => pad_edge(frame.plane(c), w, h, nw, nh),
                Restore::Resize => resize_bilinear(frame.plane(c), w, h, nw, nh),
            })
            .collect();
        let data = self.normalise_frame(&Frame::new(nw, nh, frame.channels, planes)?)?;
        Ok((data, (nw, nh), restore))
    }
}

/// How a network output plane maps back to the frame's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Crop the padding off.
    Crop,
    /// Resize back.
    Resize,
}

impl Restore {
    /// Maps an output plane (`ow`×`oh`) back to the frame's `w`×`h`.
    pub fn apply(self, plane: &[f32], ow: usize, oh: usize, w: usize, h: usize) -> Vec<f32> {
        match self {
            Restore::Crop => (0..h).flat_map(|y| plane[y * ow..y * ow + w].iter().copied()).collect(),
            Restore::Resize => resize_bilinear(plane, ow, oh, w, h),
        }
    }
}

/// Pads right and bottom by repeating the last column and row.
pub fn pad_edge(src: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(nw * nh);
    for y in 0..nh {
        let row = &src[y.min(h - 1) * w..][..w];
        out.extend_from_slice(row);
        out.extend(std::iter::repeat_n(row[w - 1], nw - w));
    }
    out
}

/// Bilinear resize with half-pixel centres (OpenCV INTER_LINEAR, no antialiasing).
pub fn resize_bilinear(src: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|i| {
                let s = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
                let lo = (s.floor() as usize).min(n_in - 1);
                let hi = (lo + 1).min(n_in - 1);
                (lo, hi, s - lo as f32)
            })
            .collect()
    };
    let (xs, ys) = (taps(w, nw), taps(h, nh));
    let mut out = Vec::with_capacity(nw * nh);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_then_crop_is_identity() {
        let src: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let padded = pad_edge(&src, 5, 3, 8, 8);
        assert_eq!(padded.len(), 64);
        assert_eq!(padded[7], 4.0); // last column repeated
        assert_eq!(padded[7 * 8], 10.0); // last row repeated
        assert_eq!(Restore::Crop.apply(&padded, 8, 8, 5, 3), src);
    }

    #[test]
    fn resize_matches_opencv_half_pixel_rule() {
        // 2 → 4: OpenCV gives [a, 0.75a+0.25b, 0.25a+0.75b, b].
        let out = resize_bilinear(&[0.0, 4.0], 2, 1, 4, 1);
        assert_eq!(out, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn reference_normalisation_keeps_the_double_division() {
        let spec = PreprocessSpec::reference();
        let frame = Frame::new(8, 8, 3, vec![1.0; 192]).unwrap();
        let (t, _) = spec.prepare(&frame, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 256, 256]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expect = (1.0 - 0.485) / 0.229 / 255.0;
        assert!((v[0] - expect).abs() < 1e-7);
    }

    #[test]
    fn a_motion_plane_is_scaled_as_the_image_without_its_mean_and_absent_means_still() {
        let spec = PreprocessSpec {
            motion: Some(MotionInput { lag: 5, reach: 16 }),
            ..PreprocessSpec::gray_default()
        };
        assert_eq!(spec.input_planes(), 2);
        // 5×3, padded to 8×8: the image plane as before, the motion plane ×(1/std) = ×4.
        let image: Vec<f32> = (0..15).map(|v| v as f32 / 20.0).collect();
        let motion: Vec<f32> = (0..15).map(|v| (v as f32 - 7.0) / 50.0).collect();
        let moving = Frame::new(5, 3, 2, [image.clone(), motion.clone()].concat()).unwrap();
        let (v, (nw, nh), _) = spec.prepare_values(&moving).unwrap();
        assert_eq!((v.len(), nw, nh), (128, 8, 8));
        assert_eq!(v[1], (image[1] - 0.5) / 0.25);
        assert_eq!(v[64 + 1], motion[1] * 4.0);
        assert_eq!(v[64 + 8 + 4], motion[5 + 4] * 4.0);
        // A still image: the same image values, and a zero motion plane.
        let still = Frame::new(5, 3, 1, image).unwrap();
        let (s, _, _) = spec.prepare_values(&still).unwrap();
        assert_eq!(s[..64], v[..64]);
        assert!(s[64..].iter().all(|&z| z == 0.0));
        // Three planes are neither.
        let three = Frame::new(5, 3, 3, vec![0.5; 45]).unwrap();
        let e = spec.prepare_values(&three).unwrap_err().to_string();
        assert!(e.contains("3 planes") && e.contains("motion plane"), "{e}");
        // A single-frame model refuses a frame with a motion plane.
        assert!(PreprocessSpec::gray_default().prepare_values(&moving).is_err());
    }

    #[test]
    fn rejects_wrong_channel_count() {
        let frame = Frame::new(8, 8, 1, vec![0.5; 64]).unwrap();
        assert!(PreprocessSpec::reference()
            .prepare(&frame, DType::F32, &Device::Cpu)
            .is_err());
    }
}
