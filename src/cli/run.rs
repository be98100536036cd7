//! `srsnet run`: the streaming pipeline from a camera, a replayed folder, a raw recording or
//! the synthetic generator to JSON Lines, masks and overlays, with run statistics.

use crate::calibration::Profile;
use crate::infer::Segmenter;
use crate::stream::pipeline::{self, PipelineConfig};
use crate::stream::postprocess::Confirmer;
use crate::stream::preprocess::{Preprocessor, Stretch};
use crate::stream::sinks::Sinks;
use crate::stream::sources::folder::FolderSource;
use crate::stream::sources::raw::{RawFormat, RawSource};
use crate::stream::sources::synthetic::SyntheticSource;
use crate::stream::sources::FrameSource;
use crate::synthetic::SceneConfig;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Everything `srsnet run` takes.
pub struct RunArgs {
    pub source: String,
    pub weights: PathBuf,
    pub model: String,
    pub device: Device,
    pub size: Option<(usize, usize)>,
    pub format: Option<String>,
    pub fps: Option<f64>,
    pub looping: bool,
    pub count: Option<u64>,
    pub seed: u64,
    pub bits: u8,
    pub targets: usize,
    pub reconnect: bool,
    pub calibration: Option<PathBuf>,
    pub stretch: Stretch,
    pub pipeline: PipelineConfig,
    pub jsonl: Option<String>,
    pub masks: Option<PathBuf>,
    pub overlays: Option<PathBuf>,
    pub stats_json: Option<PathBuf>,
}

/// Parses `WxH`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("size `{s}`: expected WxH, e.g. 640x512"))?;
    let w: usize = w.parse().with_context(|| format!("size `{s}`: bad width"))?;
    let h: usize = h.parse().with_context(|| format!("size `{s}`: bad height"))?;
    if w == 0 || h == 0 {
        bail!("size `{s}`: width and height must be positive");
    }
    Ok((w, h))
}

/// Parses `M/N` for temporal confirmation.
pub fn parse_confirm(s: &str, radius: f64) -> Result<Confirmer> {
    let (m, n) = s
        .split_once('/')
        .with_context(|| format!("--confirm `{s}`: expected M/N, e.g. 3/5"))?;
    Confirmer::new(
        m.parse().context("--confirm: bad M")?,
        n.parse().context("--confirm: bad N")?,
        radius,
    )
}

/// Opens the source a `--source` spec names.
pub fn open_source(args: &RunArgs) -> Result<Box<dyn FrameSource>> {
    let spec = args.source.as_str();
    if spec == "synthetic" {
        let (width, height) = args.size.unwrap_or((320, 256));
        let cfg = SceneConfig {
            width,
            height,
            targets: args.targets,
            seed: args.seed,
            ..Default::default()
        };
        return Ok(Box::new(SyntheticSource::new(
            cfg,
            args.bits,
            args.count.or(Some(30)).filter(|&c| c > 0),
            args.fps,
        )?));
    }
    if let Some(file) = spec.strip_prefix("raw:") {
        let (w, h) = args.size.context("a raw source needs --size WxH")?;
        let format = RawFormat::parse(args.format.as_deref().unwrap_or("y16"))?;
        return Ok(Box::new(RawSource::open(
            Path::new(file),
            w,
            h,
            format,
            args.fps,
            args.looping,
        )?));
    }
    if let Some(dev) = spec.strip_prefix("v4l:") {
        return open_camera(dev, args);
    }
    let dir = spec.strip_prefix("folder:").unwrap_or(spec);
    if !Path::new(dir).is_dir() {
        bail!("source `{spec}`: not a folder; expected synthetic, DIR, folder:DIR, raw:FILE or v4l:/dev/videoN");
    }
    Ok(Box::new(FolderSource::new(Path::new(dir), args.fps, args.looping)?))
}

#[cfg(feature = "v4l")]
fn open_camera(dev: &str, args: &RunArgs) -> Result<Box<dyn FrameSource>> {
    use crate::stream::sources::camera::{CameraSource, CaptureDevice, CaptureFormat, Opener};
    use crate::stream::sources::v4l2::{CameraRequest, V4lDevice};
    let format = match args.format.as_deref() {
        Some(f) => {
            Some(CaptureFormat::parse(f).with_context(|| format!("camera format `{f}`: expected grey, y16 or yuyv"))?)
        }
        None => None,
    };
    let req = CameraRequest {
        format,
        width: args.size.map(|s| s.0),
        height: args.size.map(|s| s.1),
        fps: args.fps.map(|f| f.round() as u32),
    };
    let path = PathBuf::from(dev);
    let opener: Opener = Box::new(move || Ok(Box::new(V4lDevice::open(&path, &req)?) as Box<dyn CaptureDevice>));
    Ok(Box::new(CameraSource::new(opener, args.reconnect)?))
}

#[cfg(not(feature = "v4l"))]
fn open_camera(dev: &str, _args: &RunArgs) -> Result<Box<dyn FrameSource>> {
    bail!("camera {dev}: this srsnet was built without the `v4l` feature (default builds have it)")
}

/// Runs the pipeline; prints the summary to stderr. A camera that disappears is an error
/// after everything captured was processed and flushed.
/// A NaN `pipeline.threshold` means "the weights' operating point".
pub fn run(mut args: RunArgs) -> Result<serde_json::Value> {
    let segmenter = Segmenter::new(&args.model, &args.weights, &args.device)?;
    if args.pipeline.threshold.is_nan() {
        args.pipeline.threshold = segmenter.default_threshold();
    }
    if !(0.0..1.0).contains(&args.pipeline.threshold) {
        bail!("--threshold must be in [0, 1), got {}", args.pipeline.threshold);
    }
    let calibration = match &args.calibration {
        Some(p) => Some(Profile::load(p).with_context(|| format!("loading calibration profile {}", p.display()))?),
        None => None,
    };
    let source = open_source(&args)?;
    eprintln!("source: {}; model: {}", source.describe(), segmenter.name());
    let pre = Preprocessor::new(calibration, args.stretch, segmenter.channels());
    let sinks = Sinks::new(args.jsonl.as_deref(), args.masks.clone(), args.overlays.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        eprintln!("\nstopping: draining the pipeline");
        s.store(true, Ordering::SeqCst);
    });
    let report = pipeline::run(source, pre, segmenter, sinks, args.pipeline, stop)?;
    eprint!("{}", report.stats.summary());
    let stats = report.stats.to_json();
    if let Some(p) = &args.stats_json {
        std::fs::write(p, serde_json::to_string_pretty(&stats)?).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(failure) = report.source_failure {
        bail!("{failure}");
    }
    Ok(stats)
}
