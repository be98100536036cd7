//! Reading IR frames from image files (PNG, BMP, TIFF, JPEG; 8- or 16-bit; gray, RGB, RGBA or
//! palette) into planar f32 intensities in [0, 1], and writing masks.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A frame as planar f32 intensities in [0, 1]: `data[c·H·W + y·W + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Frame {
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != width * height * channels {
            bail!(
                "frame data has {} values, expected {width}×{height}×{channels}",
                data.len()
            );
        }
        Ok(Self {
            width,
            height,
            channels,
            data,
        })
    }

    /// One channel as a slice of H·W values.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }
}

/// Reads `path` with `channels` = 1 (luma, Rec. 709 weights as the image crate computes it) or
/// 3 (RGB: gray replicated, alpha dropped, palette expanded, as PIL's `convert('RGB')`).
/// 8-bit values are divided by 255 and 16-bit values by 65535.
pub fn read_frame(path: &Path, channels: usize) -> Result<Frame> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .decode()
        .with_context(|| format!("cannot decode image {} (corrupt or unsupported format)", path.display()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        bail!("image {} is empty ({w}×{h})", path.display());
    }
    match channels {
        1 => Frame::new(w, h, 1, img.to_luma32f().into_raw()),
        3 => {
            let rgb = img.to_rgb32f().into_raw();
            let n = w * h;
            let mut planar = vec![0f32; 3 * n];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    planar[c * n + i] = px[c];
                }
            }
            Frame::new(w, h, 3, planar)
        }
        other => bail!("models take 1 or 3 channels, not {other}"),
    }
}

/// Writes a binary mask (0 or 255) as an 8-bit gray PNG.
pub fn write_mask_png(path: &Path, width: usize, height: usize, mask: &[bool]) -> Result<()> {
    let pixels: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
    image::GrayImage::from_raw(width as u32, height as u32, pixels)
        .context("mask size does not match its data")?
        .save(path)
        .with_context(|| format!("cannot write mask {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_16_bit_gray_to_unit_range() {
        let dir = std::env::temp_dir().join(format!("srsnet-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g16.png");
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![0u16, 65535]).unwrap();
        img.save(&p).unwrap();
        let f = read_frame(&p, 1).unwrap();
        assert_eq!((f.width, f.height, f.channels), (2, 1, 1));
        assert_eq!(f.data, vec![0.0, 1.0]);
        let f3 = read_frame(&p, 3).unwrap();
        assert_eq!(f3.data, vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn corrupt_image_error_names_the_file() {
        let dir = std::env::temp_dir().join(format!("srsnet-io-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("broken.png");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
        let err = format!("{:#}", read_frame(&p, 1).unwrap_err());
        assert!(err.contains("broken.png"), "{err}");
    }
}
