//! Labelled image/mask pairs: `images/NAME.EXT` with `masks/NAME{suffix}.EXT`, and split files
//! listing the NAMEs of each part.

use crate::image_io::{read_frame, Frame};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where the pairs are: `images/NAME.png` with `masks/NAME{mask_suffix}.png`.
#[derive(Debug, Clone)]
pub struct PairLayout {
    /// Folder of images.
    pub images: PathBuf,
    /// Folder of masks.
    pub masks: PathBuf,
    /// Appended to an image's NAME to name its mask.
    pub mask_suffix: String,
    /// Extension of images and masks, without the dot.
    pub extension: String,
}

impl PairLayout {
    /// The SIRST layout under `root`: `images/NAME.png`, `masks/NAME_pixels0.png`.
    pub fn sirst(root: &Path) -> Self {
        Self {
            images: root.join("images"),
            masks: root.join("masks"),
            mask_suffix: "_pixels0".into(),
            extension: "png".into(),
        }
    }

    /// Names listed in a split file (see [`read_split`]), or every image in the folder when none.
    pub fn names(&self, split: Option<&Path>) -> Result<Vec<String>> {
        if let Some(split) = split {
            return read_split(split);
        }
        let mut names: Vec<String> = std::fs::read_dir(&self.images)
            .with_context(|| format!("reading image folder {}", self.images.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(self.extension.as_str()))
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("no .{} images in {}", self.extension, self.images.display());
        }
        Ok(names)
    }

    /// The image file of `name`.
    pub fn image_path(&self, name: &str) -> PathBuf {
        self.images.join(format!("{name}.{}", self.extension))
    }

    /// The mask file of `name`.
    pub fn mask_path(&self, name: &str) -> PathBuf {
        self.masks
            .join(format!("{name}{}.{}", self.mask_suffix, self.extension))
    }
}

/// The NAMEs of a split (or list) file: one per line, blank lines ignored. A file that lists
/// nothing is an error, not an empty set.
pub fn read_split(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading split file {}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        bail!("split file {} lists no names", path.display());
    }
    Ok(names)
}

/// A mask file as 0/1 values (gray value > 127).
pub fn read_mask(path: &Path) -> Result<Frame> {
    let f = read_frame(path, 1)?;
    let data = f
        .data
        .iter()
        .map(|&v| if v * 255.0 > 127.0 { 1.0 } else { 0.0 })
        .collect();
    Frame::new(f.width, f.height, 1, data)
}

/// An image and its mask as read for scoring: the frame with `channels` planes and the mask
/// as booleans, sizes checked.
pub fn read_pair(layout: &PairLayout, name: &str, channels: usize) -> Result<(Frame, Vec<bool>)> {
    let frame = read_frame(&layout.image_path(name), channels)?;
    let mask_path = layout.mask_path(name);
    let gt = read_mask(&mask_path)?;
    if (gt.width, gt.height) != (frame.width, frame.height) {
        bail!(
            "mask {} is {}×{} but its image is {}×{}",
            mask_path.display(),
            gt.width,
            gt.height,
            frame.width,
            frame.height
        );
    }
    Ok((frame, gt.data.iter().map(|&v| v > 0.5).collect()))
}
