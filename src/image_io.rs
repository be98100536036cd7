//! Reading IR frames from image files and writing masks and overlays: the one place where an
//! image file becomes pixels.
//!
//! Every reader decodes through [`decode`], which refuses a file whose header announces more
//! than [`MAX_FRAME_PIXELS`] before allocating for it. A colour image becomes gray once, here,
//! by the image crate's integer Rec. 709 luma of the 8- (or 16-) bit values; the streaming
//! folder source, evaluation and training all read gray through [`read_gray`], so the same
//! file gives the same intensities everywhere. Writers encode in memory and write the file
//! with one checked call, so a full disk is an error, never a silently empty PNG.

use crate::limits::{check_frame_size, MAX_FRAME_PIXELS, MAX_FRAME_SIDE};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Raw gray pixels as a file or a sensor delivered them.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit gray.
    U8(Vec<u8>),
    /// 16-bit gray (14-bit cameras included), little-endian on the wire.
    U16(Vec<u16>),
}

impl Pixels {
    /// Number of pixels.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
        }
    }

    /// True when there are no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32 in their own units (0–255 or 0–65535).
    pub fn values(&self) -> Vec<f32> {
        match self {
            Pixels::U8(v) => v.iter().map(|&p| f32::from(p)).collect(),
            Pixels::U16(v) => v.iter().map(|&p| f32::from(p)).collect(),
        }
    }

    /// Intensities in [0, 1]: 8-bit ÷255, 16-bit ÷65535.
    pub fn unit(&self) -> Vec<f32> {
        match self {
            Pixels::U8(v) => v.iter().map(|&p| f32::from(p) / 255.0).collect(),
            Pixels::U16(v) => v.iter().map(|&p| f32::from(p) / 65535.0).collect(),
        }
    }
}

/// A frame as planar f32 intensities in [0, 1]: `data[c·H·W + y·W + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Planes (1 gray, 3 RGB).
    pub channels: usize,
    /// The planes one after the other, each row-major.
    pub data: Vec<f32>,
}

impl Frame {
    /// A frame from planar data; the length must be `width·height·channels`.
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

    /// The first plane at column `x`, row `y`, with coordinates outside the frame clamped to
    /// its edge (windows around a target near the border repeat the edge pixels).
    pub fn clamped(&self, x: isize, y: isize) -> f32 {
        let x = x.clamp(0, self.width as isize - 1) as usize;
        let y = y.clamp(0, self.height as isize - 1) as usize;
        self.data[y * self.width + x]
    }
}

/// Decodes an image file, refusing sizes beyond [`MAX_FRAME_SIDE`] / [`MAX_FRAME_PIXELS`]
/// from the header, before the pixels are allocated.
pub fn decode(path: &Path) -> Result<image::DynamicImage> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_FRAME_SIDE as u32);
    limits.max_image_height = Some(MAX_FRAME_SIDE as u32);
    // Room for the largest frame as 16-bit RGBA, plus the decoder's own buffers.
    limits.max_alloc = Some((MAX_FRAME_PIXELS * 8 * 2) as u64);
    reader.limits(limits);
    let corrupt = || {
        format!(
            "cannot decode image {} (corrupt, unsupported or too large)",
            path.display()
        )
    };
    let dec = reader.into_decoder().with_context(corrupt)?;
    let (w, h) = image::ImageDecoder::dimensions(&dec);
    check_frame_size(&format!("image {}", path.display()), w as usize, h as usize)?;
    image::DynamicImage::from_decoder(dec).with_context(corrupt)
}

/// Reads an image file as gray pixels: 16-bit files keep their depth, everything else
/// (8-bit gray, RGB, RGBA, palette, lower depths) becomes 8-bit luma.
pub fn read_gray(path: &Path) -> Result<(usize, usize, Pixels)> {
    let img = decode(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let bits = img.color().bits_per_pixel() / u16::from(img.color().channel_count());
    let pixels = if bits == 16 {
        Pixels::U16(img.to_luma16().into_raw())
    } else {
        Pixels::U8(img.to_luma8().into_raw())
    };
    Ok((w, h, pixels))
}

/// Reads `path` with `channels` = 1 (gray from [`read_gray`], ÷255 or ÷65535) or 3 (RGB:
/// gray replicated, alpha dropped, palette expanded, as PIL's `convert('RGB')`).
pub fn read_frame(path: &Path, channels: usize) -> Result<Frame> {
    match channels {
        1 => {
            let (w, h, pixels) = read_gray(path)?;
            Frame::new(w, h, 1, pixels.unit())
        }
        3 => {
            let img = decode(path)?;
            let (w, h) = (img.width() as usize, img.height() as usize);
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

/// Writes bytes to `path` with every error reported (a full disk, a vanished folder).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn encode_png(width: usize, height: usize, data: &[u8], color: image::ExtendedColorType) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(data, width as u32, height as u32, color)
        .context("encoding PNG")?;
    Ok(bytes)
}

/// Writes 8-bit gray pixels as a PNG.
pub fn write_gray_png(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    if pixels.len() != width * height {
        bail!(
            "{}: {} pixels for a {width}×{height} image",
            path.display(),
            pixels.len()
        );
    }
    write_file(path, &encode_png(width, height, pixels, image::ExtendedColorType::L8)?)
}

/// Writes 16-bit gray pixels as a PNG.
pub fn write_gray16_png(path: &Path, width: usize, height: usize, pixels: &[u16]) -> Result<()> {
    if pixels.len() != width * height {
        bail!(
            "{}: {} pixels for a {width}×{height} image",
            path.display(),
            pixels.len()
        );
    }
    // PNG stores 16-bit samples big-endian.
    let bytes: Vec<u8> = pixels.iter().flat_map(|p| p.to_be_bytes()).collect();
    write_file(path, &encode_png(width, height, &bytes, image::ExtendedColorType::L16)?)
}

/// Writes an RGB image as a PNG.
pub fn write_rgb_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    write_file(path, &encode_png(w, h, img.as_raw(), image::ExtendedColorType::Rgb8)?)
}

/// Writes a binary mask (0 or 255) as an 8-bit gray PNG.
pub fn write_mask_png(path: &Path, width: usize, height: usize, mask: &[bool]) -> Result<()> {
    let pixels: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
    write_gray_png(path, width, height, &pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("srsnet-io-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_16_bit_gray_to_unit_range() {
        let p = dir("g16").join("g16.png");
        write_gray16_png(&p, 2, 1, &[0, 65535]).unwrap();
        let f = read_frame(&p, 1).unwrap();
        assert_eq!((f.width, f.height, f.channels), (2, 1, 1));
        assert_eq!(f.data, vec![0.0, 1.0]);
        let f3 = read_frame(&p, 3).unwrap();
        assert_eq!(f3.data, vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn rgb_becomes_the_same_gray_in_every_reader() {
        let p = dir("rgb").join("rgb.png");
        let img = image::RgbImage::from_raw(2, 1, vec![200, 10, 30, 5, 250, 90]).unwrap();
        write_rgb_png(&p, &img).unwrap();
        let (_, _, px) = read_gray(&p).unwrap();
        let f = read_frame(&p, 1).unwrap();
        assert_eq!(px.unit(), f.data);
        // Rec. 709 luma: 0.2126·200 + 0.7152·10 + 0.0722·30 ≈ 52, 0.2126·5 + 0.7152·250 + 0.0722·90 ≈ 186.
        assert_eq!(px, Pixels::U8(vec![52, 186]));
    }

    #[test]
    fn corrupt_image_error_names_the_file() {
        let p = dir("bad").join("broken.png");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
        let err = format!("{:#}", read_frame(&p, 1).unwrap_err());
        assert!(err.contains("broken.png"), "{err}");
    }

    // A 16000×16000 PNG header is refused before decoding: tests/robustness.rs (d04) checks it
    // through `read_frame` and through `srsnet infer`.

    #[test]
    fn a_full_disk_is_an_error() {
        let err = format!(
            "{:#}",
            write_mask_png(Path::new("/dev/full"), 2, 2, &[true; 4]).unwrap_err()
        );
        assert!(err.contains("/dev/full"), "{err}");
    }
}
