//! Replay of an image folder in sorted order, including the sequence layout (`frames/` plus
//! `centroids.csv`, whose ground truth rides along with each frame; see
//! [`crate::dataset::sequence`]).

use super::{FrameSource, Pacer, SourceError};
use crate::dataset::folder::list_images;
use crate::dataset::sequence::{Sequence, SequenceFrame};
use crate::image_io::read_gray;
use crate::stream::frame::RawFrame;
use crate::stream::stop::Stop;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A folder or sequence replayed frame by frame.
pub struct FolderSource {
    dir: PathBuf,
    frames: Vec<SequenceFrame>,
    annotated: bool,
    pos: usize,
    index: u64,
    looping: bool,
    /// Frames read successfully in the current pass (a loop over a folder whose every frame
    /// is unreadable must end, not spin).
    good_this_pass: usize,
    pacer: Pacer,
}

impl FolderSource {
    /// `dir` holds images, or is a sequence (`frames/` + optional `centroids.csv`).
    pub fn new(dir: &Path, fps: Option<f64>, looping: bool) -> Result<Self> {
        let frames = if Sequence::is_sequence(dir) {
            Sequence::open(dir)?.frames
        } else {
            list_images(dir)?
                .into_iter()
                .map(|path| SequenceFrame {
                    name: path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string(),
                    path,
                    truth: None,
                    boxes: None,
                })
                .collect()
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            annotated: frames.first().is_some_and(|f| f.truth.is_some()),
            frames,
            pos: 0,
            index: 0,
            looping,
            good_this_pass: 0,
            pacer: Pacer::new(fps),
        })
    }

    /// Frames in one pass.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when there is no frame (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

impl FrameSource for FolderSource {
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>> {
        if self.pos >= self.frames.len() {
            if !self.looping {
                return None;
            }
            if self.good_this_pass == 0 {
                return Some(Err(SourceError::Fatal(format!(
                    "{}: none of its {} frames could be read; not looping over it again",
                    self.dir.display(),
                    self.frames.len()
                ))));
            }
            self.pos = 0;
            self.good_this_pass = 0;
        }
        let frame = &self.frames[self.pos];
        self.pos += 1;
        let timestamp = self.pacer.wait(stop)?;
        let index = self.index;
        self.index += 1;
        Some(match read_gray(&frame.path) {
            Ok((width, height, pixels)) => {
                self.good_this_pass += 1;
                Ok(RawFrame {
                    index,
                    timestamp,
                    captured_at: Instant::now(),
                    width,
                    height,
                    pixels,
                    origin: frame.path.display().to_string(),
                    truth: frame.truth.clone(),
                })
            }
            Err(e) => Err(SourceError::Frame(format!(
                "frame {index} ({}): {e:#}",
                frame.path.display()
            ))),
        })
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} frames{})",
            self.dir.display(),
            self.frames.len(),
            if self.annotated { ", with centroids" } else { "" }
        )
    }
}
