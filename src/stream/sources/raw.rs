//! Headerless raw recordings: consecutive Y8 or Y16 (little-endian) frames, memory-mapped.

use super::{FrameSource, Pacer, SourceError};
use crate::stream::frame::{Pixels, RawFrame};
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    Y8,
    Y16,
}

impl RawFormat {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "y8" | "grey" | "gray" => Ok(Self::Y8),
            "y16" => Ok(Self::Y16),
            other => bail!("unknown raw format `{other}`: expected y8 or y16"),
        }
    }

    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Y8 => 1,
            Self::Y16 => 2,
        }
    }
}

pub struct RawSource {
    path: PathBuf,
    map: Mmap,
    width: usize,
    height: usize,
    format: RawFormat,
    frames: usize,
    next: usize,
    trailing: usize,
    reported_trailing: bool,
    looping: bool,
    pacer: Pacer,
}

impl RawSource {
    pub fn open(
        path: &Path,
        width: usize,
        height: usize,
        format: RawFormat,
        fps: Option<f64>,
        looping: bool,
    ) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open raw recording {}", path.display()))?;
        // SAFETY: read-only map of a recording; it must not be truncated while we replay it.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        let frame_bytes = width * height * format.bytes_per_pixel();
        if frame_bytes == 0 {
            bail!("--size must be positive, got {width}x{height}");
        }
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
            trailing,
            reported_trailing: false,
            looping,
            pacer: Pacer::new(fps),
        })
    }

    pub fn frame_count(&self) -> usize {
        self.frames
    }
}

impl FrameSource for RawSource {
    fn next_frame(&mut self) -> Option<Result<RawFrame, SourceError>> {
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
        let index = self.next as u64;
        self.next += 1;
        Some(Ok(RawFrame {
            index,
            timestamp: self.pacer.wait(),
            captured_at: Instant::now(),
            width: self.width,
            height: self.height,
            pixels,
            origin: format!("{}#{index}", self.path.display()),
            truth: None,
        }))
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
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
