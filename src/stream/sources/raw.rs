//! Headerless raw recordings: consecutive Y8 or Y16 (little-endian) frames, memory-mapped.

use super::{FrameSource, Pacer, PixelFormat, SourceError};
use crate::limits::check_frame_size;
use crate::stream::frame::{Pixels, RawFrame};
use crate::stream::stop::Stop;
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sample format of a raw recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// One byte per pixel.
    Y8,
    /// Two bytes per pixel, little-endian.
    Y16,
}

impl TryFrom<PixelFormat> for RawFormat {
    type Error = anyhow::Error;

    fn try_from(f: PixelFormat) -> Result<Self> {
        match f {
            PixelFormat::Y8 => Ok(Self::Y8),
            PixelFormat::Y16 => Ok(Self::Y16),
            PixelFormat::Yuyv => bail!("raw recordings are y8 or y16, not yuyv"),
        }
    }
}

impl RawFormat {
    /// Bytes per pixel in the file.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Y8 => 1,
            Self::Y16 => 2,
        }
    }
}

/// A memory-mapped raw recording replayed frame by frame.
pub struct RawSource {
    path: PathBuf,
    map: Mmap,
    width: usize,
    height: usize,
    format: RawFormat,
    frames: usize,
    next: usize,
    /// Position in the stream (keeps counting across loops).
    index: u64,
    trailing: usize,
    reported_trailing: bool,
    looping: bool,
    pacer: Pacer,
}

impl RawSource {
    /// Maps `path` as frames of `width`×`height` in `format`; the size is checked against the
    /// limits before anything is computed from it.
    pub fn open(
        path: &Path,
        width: usize,
        height: usize,
        format: RawFormat,
        fps: Option<f64>,
        looping: bool,
    ) -> Result<Self> {
        check_frame_size(&format!("raw {} --size", path.display()), width, height)?;
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open raw recording {}", path.display()))?;
        // SAFETY: read-only map of a recording; it must not be truncated while we replay it.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        let frame_bytes = width * height * format.bytes_per_pixel();
        let frames = map.len() / frame_bytes;
        if frames == 0 {
            bail!(
                "{} is {} bytes, smaller than one {width}×{height} {:?} frame ({frame_bytes} bytes): is --size or --format wrong?",
                path.display(),
                map.len(),
                format
            );
        }
        let trailing = map.len() % frame_bytes;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            width,
            height,
            format,
            frames,
            next: 0,
            index: 0,
            trailing,
            reported_trailing: false,
            looping,
            pacer: Pacer::new(fps),
        })
    }

    /// Whole frames in the file.
    pub fn frame_count(&self) -> usize {
        self.frames
    }
}

impl FrameSource for RawSource {
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>> {
        if self.next >= self.frames {
            if self.trailing > 0 && !self.reported_trailing {
                self.reported_trailing = true;
                return Some(Err(SourceError::Frame(format!(
                    "{}: {} trailing bytes are not a whole {}×{} frame ({} bytes); partial frame skipped (check --size/--format)",
                    self.path.display(),
                    self.trailing,
                    self.width,
                    self.height,
                    self.width * self.height * self.format.bytes_per_pixel()
                ))));
            }
            if !self.looping {
                return None;
            }
            self.next = 0;
        }
        let n = self.width * self.height;
        let bytes = &self.map[self.next * n * self.format.bytes_per_pixel()..][..n * self.format.bytes_per_pixel()];
        let pixels = match self.format {
            RawFormat::Y8 => Pixels::U8(bytes.to_vec()),
            RawFormat::Y16 => Pixels::U16(
                bytes
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
        };
        let index = self.index;
        self.next += 1;
        self.index += 1;
        let timestamp = self.pacer.wait(stop)?;
        Some(Ok(RawFrame {
            index,
            timestamp,
            captured_at: Instant::now(),
            width: self.width,
            height: self.height,
            pixels,
            origin: format!("{}#{index}", self.path.display()),
            truth: None,
        }))
    }

    fn known_length(&self) -> Option<u64> {
        (!self.looping).then_some(self.frames as u64)
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "raw {} ({} {:?} frames of {}×{})",
            self.path.display(),
            self.frames,
            self.format,
            self.width,
            self.height
        )
    }
}

/// Writes frames as a headerless raw recording (for tests and tools).
pub fn write_raw(path: &Path, frames: &[Pixels]) -> Result<()> {
    let mut bytes = Vec::new();
    for f in frames {
        match f {
            Pixels::U8(v) => bytes.extend_from_slice(v),
            Pixels::U16(v) => v.iter().for_each(|p| bytes.extend_from_slice(&p.to_le_bytes())),
        }
    }
    crate::image_io::write_file(path, &bytes)
}
