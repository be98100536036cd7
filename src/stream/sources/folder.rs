//! Replay of an image folder in sorted order, including the DAUB layout (`frames/` plus
//! `centroids.csv`, whose ground truth rides along with each frame).

use super::{FrameSource, Pacer, SourceError};
use crate::cli::eval::read_centroids;
use crate::stream::frame::{Pixels, RawFrame};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    truth: HashMap<String, Vec<(f64, f64)>>,
    pos: usize,
    index: u64,
    looping: bool,
    pacer: Pacer,
}

const IMAGE_EXTENSIONS: [&str; 7] = ["png", "bmp", "tif", "tiff", "jpg", "jpeg", "pgm"];

impl FolderSource {
    /// `dir` holds images, or is a DAUB-style sequence (`frames/` + `centroids.csv`).
    pub fn new(dir: &Path, fps: Option<f64>, looping: bool) -> Result<Self> {
        let (frames, truth) = if dir.join("frames").is_dir() {
            let csv = dir.join("centroids.csv");
            let truth = if csv.exists() {
                read_centroids(&csv)?.into_iter().fold(
                    HashMap::new(),
                    |mut m: HashMap<String, Vec<(f64, f64)>>, (f, x, y)| {
                        m.entry(f).or_default().push((x, y));
                        m
                    },
                )
            } else {
                HashMap::new()
            };
            (dir.join("frames"), truth)
        } else {
            (dir.to_path_buf(), HashMap::new())
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&frames)
            .with_context(|| format!("cannot read frame folder {}", frames.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no image files in {}", frames.display());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            truth,
            pos: 0,
            index: 0,
            looping,
            pacer: Pacer::new(fps),
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Reads an image file as 8- or 16-bit gray pixels (16-bit files keep their depth).
pub fn read_gray(path: &Path) -> Result<(usize, usize, Pixels)> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()?
        .decode()
        .with_context(|| format!("cannot decode {} (corrupt or unsupported)", path.display()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels = match img.color().bits_per_pixel() / img.color().channel_count() as u16 {
        16 => Pixels::U16(img.to_luma16().into_raw()),
        _ => Pixels::U8(img.to_luma8().into_raw()),
    };
    Ok((w, h, pixels))
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self) -> Option<Result<RawFrame, SourceError>> {
        if self.pos >= self.files.len() {
            if !self.looping {
                return None;
            }
            self.pos = 0;
        }
        let path = self.files[self.pos].clone();
        self.pos += 1;
        let index = self.index;
        self.index += 1;
        let timestamp = self.pacer.wait();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        Some(match read_gray(&path) {
            Ok((width, height, pixels)) => Ok(RawFrame {
                index,
                timestamp,
                captured_at: Instant::now(),
                width,
                height,
                pixels,
                origin: path.display().to_string(),
                truth: self
                    .truth
                    .get(&name)
                    .cloned()
                    .or_else(|| (!self.truth.is_empty()).then(Vec::new)),
            }),
            Err(e) => Err(SourceError::Frame(format!("frame {index} ({}): {e:#}", path.display()))),
        })
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} frames{})",
            self.dir.display(),
            self.files.len(),
            if self.truth.is_empty() { "" } else { ", with centroids" }
        )
    }
}
