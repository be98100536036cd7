//! Training data: image/mask pairs (the SIRST layout or any images + masks folders) and
//! unlabeled image folders for the reconstruction stage.

use crate::dataset::folder::list_images;
use crate::dataset::pairs::{read_pair, PairLayout};
use crate::image_io::{read_frame, Frame};
use crate::preprocess::resize_bilinear;
use anyhow::Result;
use std::path::Path;

/// One training pair at its native size: gray intensities in [0, 1] and a 0/1 mask.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The NAME (or path) it came from.
    pub name: String,
    /// Intensities in [0, 1].
    pub image: Frame,
    /// 0.0 or 1.0 per pixel, binarised at > 127 from the mask file.
    pub mask: Option<Vec<f32>>,
}

/// A pair that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The pair's NAME or the file.
    pub name: String,
    /// Why it was skipped.
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
    let (image, mask) = read_pair(layout, name, channels)?;
    Ok(Sample {
        name: name.to_string(),
        image,
        mask: Some(mask.into_iter().map(|m| if m { 1.0 } else { 0.0 }).collect()),
    })
}

/// Unlabeled images (every readable image file in `dir`) for the reconstruction stage.
pub fn load_unlabeled(dir: &Path, channels: usize) -> Result<(Vec<Sample>, Vec<Skipped>)> {
    let paths = list_images(dir)?;
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
