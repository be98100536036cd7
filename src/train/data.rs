//! Training data: image/mask pairs (the SIRST layout or any images + masks folders) and
//! unlabeled image folders for the reconstruction stage.

use crate::image_io::{read_frame, Frame};
use crate::preprocess::resize_bilinear;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One training pair at its native size: gray intensities in [0, 1] and a 0/1 mask.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub image: Frame,
    /// 0.0 or 1.0 per pixel, binarised at > 127 from the mask file.
    pub mask: Option<Vec<f32>>,
}

/// Where the pairs are: `images/NAME.png` with `masks/NAME{mask_suffix}.png`.
#[derive(Debug, Clone)]
pub struct PairLayout {
    pub images: PathBuf,
    pub masks: PathBuf,
    pub mask_suffix: String,
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

    /// Names listed in a split file (one per line), or every image in the folder when none.
    pub fn names(&self, split: Option<&Path>) -> Result<Vec<String>> {
        if let Some(split) = split {
            let text =
                std::fs::read_to_string(split).with_context(|| format!("reading split file {}", split.display()))?;
            return Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect());
        }
        let mut names: Vec<String> = std::fs::read_dir(&self.images)
            .with_context(|| format!("reading image folder {}", self.images.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(self.extension.as_str()))
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn image_path(&self, name: &str) -> PathBuf {
        self.images.join(format!("{name}.{}", self.extension))
    }

    pub fn mask_path(&self, name: &str) -> PathBuf {
        self.masks
            .join(format!("{name}{}.{}", self.mask_suffix, self.extension))
    }
}

/// A pair that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// Loads the listed pairs; a pair with a missing, unreadable or mis-sized file is reported
/// by name and skipped, the others are kept.
pub fn load_pairs(layout: &PairLayout, names: &[String], channels: usize) -> (Vec<Sample>, Vec<Skipped>) {
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        match load_pair(layout, name, channels) {
            Ok(s) => samples.push(s),
            Err(e) => skipped.push(Skipped {
                name: name.clone(),
                reason: format!("{e:#}"),
            }),
        }
    }
    (samples, skipped)
}

fn load_pair(layout: &PairLayout, name: &str, channels: usize) -> Result<Sample> {
    let image = read_frame(&layout.image_path(name), channels)?;
    let mask_path = layout.mask_path(name);
    let mask = read_mask(&mask_path)?;
    if (mask.width, mask.height) != (image.width, image.height) {
        bail!(
            "mask {} is {}×{} but its image is {}×{}",
            mask_path.display(),
            mask.width,
            mask.height,
            image.width,
            image.height
        );
    }
    Ok(Sample {
        name: name.to_string(),
        image,
        mask: Some(mask.data),
    })
}

/// A mask file as 0/1 values (pixel > 127 of its gray conversion).
pub fn read_mask(path: &Path) -> Result<Frame> {
    let f = read_frame(path, 1)?;
    let data = f
        .data
        .iter()
        .map(|&v| if v * 255.0 > 127.0 { 1.0 } else { 0.0 })
        .collect();
    Frame::new(f.width, f.height, 1, data)
}

/// Unlabeled images (every readable image file in `dir`) for the reconstruction stage.
pub fn load_unlabeled(dir: &Path, channels: usize) -> Result<(Vec<Sample>, Vec<Skipped>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading image folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        match read_frame(&p, channels) {
            Ok(image) => samples.push(Sample {
                name,
                image,
                mask: None,
            }),
            Err(e) => skipped.push(Skipped {
                name,
                reason: format!("{e:#}"),
            }),
        }
    }
    Ok((samples, skipped))
}

/// Resizes a sample to `size`×`size` (bilinear image, nearest mask: as albumentations' Resize).
pub fn resize_sample(s: &Sample, size: usize) -> Sample {
    let (w, h) = (s.image.width, s.image.height);
    let planes: Vec<f32> = (0..s.image.channels)
        .flat_map(|c| resize_bilinear(s.image.plane(c), w, h, size, size))
        .collect();
    let mask = s.mask.as_ref().map(|m| resize_nearest(m, w, h, size, size));
    Sample {
        name: s.name.clone(),
        image: Frame {
            width: size,
            height: size,
            channels: s.image.channels,
            data: planes,
        },
        mask,
    }
}

/// Nearest-neighbour resize with OpenCV's INTER_NEAREST rule (src = floor(dst·in/out)).
pub fn resize_nearest(src: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(nw * nh);
    for y in 0..nh {
        let sy = (y * h / nh).min(h - 1);
        for x in 0..nw {
            out.push(src[sy * w + (x * w / nw).min(w - 1)]);
        }
    }
    out
}
