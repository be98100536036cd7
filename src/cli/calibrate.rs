//! `srsnet calibrate`: a non-uniformity profile and bad-pixel map from a cold and a hot
//! flat-field recording (raw Y8/Y16 files or image folders, named as `--source` names them).

use super::{parse_size, refuse_overwrite};
use crate::calibration::{two_point_from, FlatStats, Profile};
use crate::progress::Progress;
use crate::stream::sources::{self, PixelFormat, SourceOptions, SourceSpec};
use crate::stream::stop::Stop;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Arguments of `srsnet calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Cold flat-field recording: raw:FILE or a folder of images.
    #[arg(long)]
    pub cold: SourceSpec,
    /// Hot flat-field recording.
    #[arg(long)]
    pub hot: SourceSpec,
    /// Frame size WxH (raw recordings).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Raw sample format.
    #[arg(long, value_enum, default_value = "y16")]
    pub format: PixelFormat,
    /// The profile to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `srsnet calibrate`.
pub fn run(args: CalibrateArgs) -> Result<Profile> {
    for spec in [&args.cold, &args.hot] {
        if let SourceSpec::Raw(p) | SourceSpec::Folder(p) = spec {
            refuse_overwrite([p.as_path()], &args.out)?;
        }
    }
    let (w, h, c) = flat_stats(&args.cold, &args)?;
    let (w2, h2, hf) = flat_stats(&args.hot, &args)?;
    if (w, h) != (w2, h2) {
        bail!("cold frames are {w}×{h} but hot frames are {w2}×{h2}");
    }
    let profile = two_point_from(w, h, &c, &hf)?;
    profile.save(&args.out)?;
    eprintln!("wrote {} ({}×{}, {})", args.out.display(), w, h, profile.description);
    Ok(profile)
}

/// The per-pixel statistics of every frame of a recording, in raw values, accumulated frame by
/// frame (a long recording is never held whole); any unreadable frame is an error (a profile
/// from part of a recording would be silently wrong).
fn flat_stats(spec: &SourceSpec, args: &CalibrateArgs) -> Result<(usize, usize, FlatStats)> {
    if matches!(spec, SourceSpec::Synthetic | SourceSpec::Camera(_) | SourceSpec::Gst(_)) {
        bail!("{spec:?}: flat fields are read from raw:FILE or an image folder");
    }
    let opts = SourceOptions {
        size: args.size,
        format: Some(args.format),
        count: None,
        ..Default::default()
    };
    let mut src = sources::open(spec, &opts)?;
    let stop = Stop::new();
    let mut stats: Option<FlatStats> = None;
    let mut dims = None;
    let mut progress = src.known_length().map(|n| Progress::new("calibrate", n));
    while let Some(f) = src.next_frame(&stop) {
        if let Some(p) = &mut progress {
            p.inc();
        }
        let f = f.map_err(|e| anyhow::anyhow!("{}: {e}", src.describe()))?;
        if dims.is_some_and(|d| d != (f.width, f.height)) {
            bail!(
                "{}: frame {} is {}×{}, earlier frames differ",
                src.describe(),
                f.index,
                f.width,
                f.height
            );
        }
        dims = Some((f.width, f.height));
        stats
            .get_or_insert_with(|| FlatStats::new(f.width * f.height))
            .add(&f.pixels.values());
    }
    if let Some(p) = progress {
        p.finish();
    }
    let (Some((w, h)), Some(stats)) = (dims, stats) else {
        bail!("{}: no frames", src.describe())
    };
    Ok((w, h, stats))
}
