//! Replay of an image folder in sorted order, with whatever ground truth the layout carries
//! riding along with each frame:
//! - the sequence layout (`frames/` + `centroids.csv` or `boxes.csv`; see
//!   [`crate::dataset::sequence`]): target centres;
//! - labelled sets (`images/` + `masks/`): the SIRST layout (`masks/NAME_pixels0.png`) or the
//!   NUDT-KBT19 layout (`masks/` holding a file of the image's own name), optionally restricted to
//!   the NAMEs of a split file: masks;
//! - any other folder of images: no truth.

use super::{FrameSource, Pacer, SourceError};
use crate::dataset::folder::{file_name, list_images};
use crate::dataset::pairs::{read_mask, read_split};
use crate::dataset::sequence::{Sequence, SequenceFrame};
use crate::dataset::Truth;
use crate::image_io::read_gray;
use crate::stream::frame::RawFrame;
use crate::stream::stop::Stop;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A folder or sequence replayed frame by frame.
pub struct FolderSource {
    dir: PathBuf,
    frames: Vec<SequenceFrame>,
    /// Per frame, its mask file (labelled sets).
    masks: Vec<Option<PathBuf>>,
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
        Self::with_split(dir, None, fps, looping)
    }

    /// As [`FolderSource::new`]; a labelled set replays only the NAMEs listed in `split`.
    pub fn with_split(dir: &Path, split: Option<&Path>, fps: Option<f64>, looping: bool) -> Result<Self> {
        let mut masks = Vec::new();
        let frames = if Sequence::is_sequence(dir) {
            Sequence::open(dir)?.frames
        } else if dir.join("images").is_dir() && dir.join("masks").is_dir() {
            let (frames, m) = labelled_set(dir, split)?;
            masks = m;
            frames
        } else {
            list_images(dir)?
                .into_iter()
                .map(|path| SequenceFrame {
                    name: file_name(&path),
                    path,
                    truth: None,
                    boxes: None,
                })
                .collect()
        };
        if split.is_some() && masks.is_empty() {
            bail!(
                "--split applies to labelled sets (images/ + masks/); {} is not one",
                dir.display()
            );
        }
        masks.resize(frames.len(), None);
        Ok(Self {
            dir: dir.to_path_buf(),
            annotated: frames.first().is_some_and(|f| f.truth.is_some()) || masks.iter().any(Option::is_some),
            masks,
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

/// The images of a labelled set (sorted, or the split's NAMEs) and each one's mask file: the
/// SIRST name `masks/NAME_pixels0.EXT` when it exists, else the image's own file name in `masks/`.
fn labelled_set(dir: &Path, split: Option<&Path>) -> Result<(Vec<SequenceFrame>, Vec<Option<PathBuf>>)> {
    let mut files = list_images(&dir.join("images"))?;
    if let Some(split) = split {
        let names = read_split(split)?;
        let stem = |p: &PathBuf| p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if let Some(missing) = names.iter().find(|n| !files.iter().any(|f| &stem(f) == *n)) {
            bail!(
                "{}: `{missing}` is not in {}",
                split.display(),
                dir.join("images").display()
            );
        }
        files.retain(|f| names.contains(&stem(f)));
    }
    let mut frames = Vec::with_capacity(files.len());
    let mut masks = Vec::with_capacity(files.len());
    for path in files {
        let name = file_name(&path);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("png");
        let sirst = dir.join("masks").join(format!("{stem}_pixels0.{ext}"));
        masks.push(Some(if sirst.exists() {
            sirst
        } else {
            dir.join("masks").join(&name)
        }));
        frames.push(SequenceFrame {
            path,
            name,
            truth: None,
            boxes: None,
        });
    }
    Ok((frames, masks))
}

/// A frame's mask, which must exist and match the frame's size.
fn mask_for(path: &Path, width: usize, height: usize) -> Result<Vec<bool>> {
    if !path.exists() {
        bail!("no mask {} for it", path.display());
    }
    let m = read_mask(path)?;
    if (m.width, m.height) != (width, height) {
        bail!(
            "mask {} is {}×{} but its image is {width}×{height}",
            path.display(),
            m.width,
            m.height
        );
    }
    Ok(m.data.iter().map(|&v| v > 0.5).collect())
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
        let mask = self.masks[self.pos].clone();
        self.pos += 1;
        let timestamp = self.pacer.wait(stop)?;
        let index = self.index;
        self.index += 1;
        let read = read_gray(&frame.path).and_then(|(width, height, pixels)| {
            let truth = match &mask {
                Some(m) => Some(Truth::Mask(mask_for(m, width, height)?)),
                None => frame.truth.clone().map(Truth::Points),
            };
            Ok((width, height, pixels, truth))
        });
        Some(match read {
            Ok((width, height, pixels, truth)) => {
                self.good_this_pass += 1;
                Ok(RawFrame {
                    index,
                    timestamp,
                    captured_at: Instant::now(),
                    width,
                    height,
                    pixels,
                    origin: frame.path.display().to_string(),
                    truth,
                })
            }
            Err(e) => Err(SourceError::Frame(format!(
                "frame {index} ({}): {e:#}",
                frame.path.display()
            ))),
        })
    }

    fn known_length(&self) -> Option<u64> {
        (!self.looping).then_some(self.frames.len() as u64)
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "folder {} ({} frames{})",
            self.dir.display(),
            self.frames.len(),
            match (self.annotated, self.masks.iter().any(Option::is_some)) {
                (true, true) => ", with masks",
                (true, false) => ", with centroids",
                _ => "",
            }
        )
    }
}
