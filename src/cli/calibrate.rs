//! `srsnet calibrate`: a non-uniformity profile and bad-pixel map from a cold and a hot
//! flat-field recording (raw Y8/Y16 files or image folders).

use crate::calibration::{two_point, Profile};
use crate::stream::frame::Pixels;
use crate::stream::sources::folder::FolderSource;
use crate::stream::sources::raw::{RawFormat, RawSource};
use crate::stream::sources::FrameSource;
use anyhow::{bail, Result};
use std::path::Path;

/// Every frame of a recording as raw values.
fn frames_of(spec: &str, size: Option<(usize, usize)>, format: &str) -> Result<(usize, usize, Vec<Vec<f32>>)> {
    let mut src: Box<dyn FrameSource> = match spec.strip_prefix("raw:") {
        Some(file) => {
            let Some((w, h)) = size else {
                bail!("raw recordings need --size WxH")
            };
            Box::new(RawSource::open(
                Path::new(file),
                w,
                h,
                RawFormat::parse(format)?,
                None,
                false,
            )?)
        }
        None => Box::new(FolderSource::new(
            Path::new(spec.strip_prefix("folder:").unwrap_or(spec)),
            None,
            false,
        )?),
    };
    let mut out = Vec::new();
    let mut dims = None;
    while let Some(f) = src.next_frame() {
        let f = f.map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
        if dims.is_some_and(|d| d != (f.width, f.height)) {
            bail!(
                "{spec}: frame {} is {}×{}, earlier frames differ",
                f.index,
                f.width,
                f.height
            );
        }
        dims = Some((f.width, f.height));
        out.push(match f.pixels {
            Pixels::U8(v) => v.into_iter().map(f32::from).collect(),
            Pixels::U16(v) => v.into_iter().map(f32::from).collect(),
        });
    }
    let Some((w, h)) = dims else { bail!("{spec}: no frames") };
    Ok((w, h, out))
}

pub fn calibrate(cold: &str, hot: &str, size: Option<(usize, usize)>, format: &str, out: &Path) -> Result<Profile> {
    let (w, h, c) = frames_of(cold, size, format)?;
    let (w2, h2, hf) = frames_of(hot, size, format)?;
    if (w, h) != (w2, h2) {
        bail!("cold frames are {w}×{h} but hot frames are {w2}×{h2}");
    }
    let profile = two_point(w, h, &c, &hf)?;
    profile.save(out)?;
    eprintln!("wrote {} ({}×{}, {})", out.display(), w, h, profile.description);
    Ok(profile)
}
