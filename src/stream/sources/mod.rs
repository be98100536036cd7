//! Frame sources behind one trait: synthetic scenes, replayed image folders and sequences,
//! raw recordings, V4L2 cameras and GStreamer pipelines; and [`SourceSpec`], the one parser of `--source` (and of
//! `srsnet calibrate`'s recordings), with [`open`] turning a spec into a source.

pub mod camera;
pub mod folder;
#[cfg(feature = "gstreamer")]
pub mod gst;
pub mod raw;
pub mod synthetic;
#[cfg(feature = "camera")]
pub mod v4l2;

use super::frame::RawFrame;
use super::stop::Stop;
use crate::synthetic::{BitDepth, SceneConfig};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a source can report instead of a frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// One frame is bad (unreadable file, partial buffer); the stream goes on.
    #[error("{0}")]
    Frame(String),
    /// The source cannot go on (device gone, file vanished).
    #[error("{0}")]
    Fatal(String),
}

/// A stream of frames.
pub trait FrameSource: Send {
    /// The next frame, an error about one frame, or `None` at the end of the stream or when
    /// `stop` was requested (every wait inside a source watches it).
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>>;
    /// Live sources (cameras) must never be blocked: the pipeline drops old frames instead.
    fn is_live(&self) -> bool;
    /// A one-line description for logs.
    fn describe(&self) -> String;
    /// Frames the stream will deliver, when known (a replay that does not loop); drives the
    /// progress display.
    fn known_length(&self) -> Option<u64> {
        None
    }
}

/// Where frames come from, as `--source` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `synthetic`: the built-in generator.
    Synthetic,
    /// `DIR` or `folder:DIR`: sorted images, a sequence (`frames/` + `centroids.csv`), or a
    /// labelled set (`images/` + `masks/`, SIRST or NUDT-KBT19 layout).
    Folder(PathBuf),
    /// `raw:FILE`: a headerless Y8/Y16 recording (needs the frame size).
    Raw(PathBuf),
    /// `v4l:/dev/videoN`: a V4L2 camera.
    Camera(PathBuf),
    /// `gst:PIPELINE`: a GStreamer pipeline up to a video stream (the gray conversion and the
    /// appsink are appended).
    Gst(String),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let path = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(format!("`{s}`: {what} needs a path after the colon"))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if s == "synthetic" {
            Ok(Self::Synthetic)
        } else if let Some(rest) = s.strip_prefix("raw:") {
            path(rest, "raw:").map(Self::Raw)
        } else if let Some(rest) = s.strip_prefix("v4l:") {
            path(rest, "v4l:").map(Self::Camera)
        } else if let Some(rest) = s.strip_prefix("folder:") {
            path(rest, "folder:").map(Self::Folder)
        } else if let Some(rest) = s.strip_prefix("gst:") {
            match rest.trim() {
                "" => Err(format!(
                    "`{s}`: gst: needs a pipeline, e.g. gst:'videotestsrc num-buffers=100'"
                )),
                p => Ok(Self::Gst(p.to_string())),
            }
        } else if s.is_empty() {
            Err("empty source: expected synthetic, DIR, folder:DIR, raw:FILE, v4l:/dev/videoN or gst:PIPELINE".into())
        } else {
            Ok(Self::Folder(PathBuf::from(s)))
        }
    }
}

/// Pixel formats of `--format`: raw recordings take y8 and y16, cameras also yuyv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PixelFormat {
    /// 8-bit gray (V4L2 `GREY`).
    #[value(alias = "grey", alias = "gray")]
    Y8,
    /// 16-bit little-endian gray (V4L2 `Y16 `).
    Y16,
    /// Packed YUV 4:2:2 (cameras only); the luma is kept.
    Yuyv,
}

/// How a spec is opened: the options of `srsnet run` that shape a source.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Frame size: required for raw files, requested from cameras, synthetic size.
    pub size: Option<(usize, usize)>,
    /// Raw or camera pixel format.
    pub format: Option<PixelFormat>,
    /// Replay rate or requested camera rate (None: as fast as possible / the camera's own).
    pub fps: Option<f64>,
    /// Repeat a folder or raw recording for ever.
    pub looping: bool,
    /// Frames to deliver (None: all the source has; the synthetic source is then endless).
    pub count: Option<u64>,
    /// Synthetic scene seed.
    pub seed: u64,
    /// Synthetic sample depth.
    pub bits: BitDepth,
    /// Synthetic targets per frame.
    pub targets: usize,
    /// Keep retrying a camera that disappears.
    pub reconnect: bool,
    /// A labelled set replays only the NAMEs of this split file.
    pub split: Option<PathBuf>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            size: None,
            format: None,
            fps: None,
            looping: false,
            count: None,
            seed: 7,
            bits: BitDepth::Eight,
            targets: 2,
            reconnect: false,
            split: None,
        }
    }
}

/// The synthetic frame size when none is given.
pub const DEFAULT_SYNTHETIC_SIZE: (usize, usize) = (320, 256);

/// Opens the source `spec` names, delivering at most `opts.count` frames.
pub fn open(spec: &SourceSpec, opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    let source = open_all(spec, opts)?;
    Ok(match opts.count {
        Some(n) if !matches!(spec, SourceSpec::Synthetic) => Box::new(Limited {
            source,
            left: n,
            count: n,
        }),
        _ => source,
    })
}

/// At most `count` frames (or frame errors) of another source.
struct Limited {
    source: Box<dyn FrameSource>,
    left: u64,
    count: u64,
}

impl FrameSource for Limited {
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.source.next_frame(stop)
    }

    fn is_live(&self) -> bool {
        self.source.is_live()
    }

    fn describe(&self) -> String {
        format!("{}, first {} frames", self.source.describe(), self.count)
    }

    fn known_length(&self) -> Option<u64> {
        Some(self.source.known_length().map_or(self.count, |n| n.min(self.count)))
    }
}

/// The scene the synthetic source simulates for these options.
pub fn synthetic_scene(opts: &SourceOptions) -> SceneConfig {
    let (width, height) = opts.size.unwrap_or(DEFAULT_SYNTHETIC_SIZE);
    SceneConfig {
        width,
        height,
        targets: opts.targets,
        seed: opts.seed,
        ..Default::default()
    }
}

fn open_all(spec: &SourceSpec, opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    match spec {
        SourceSpec::Synthetic => Ok(Box::new(synthetic::SyntheticSource::new(
            synthetic_scene(opts),
            opts.bits,
            opts.count,
            opts.fps,
        )?)),
        SourceSpec::Raw(file) => {
            let Some((w, h)) = opts.size else {
                bail!("raw:{}: a raw recording needs --size WxH", file.display())
            };
            let format = raw::RawFormat::try_from(opts.format.unwrap_or(PixelFormat::Y16))?;
            Ok(Box::new(raw::RawSource::open(
                file,
                w,
                h,
                format,
                opts.fps,
                opts.looping,
            )?))
        }
        SourceSpec::Camera(dev) => open_camera(dev, opts),
        SourceSpec::Gst(pipeline) => open_gst(pipeline),
        SourceSpec::Folder(dir) => {
            if !dir.is_dir() {
                bail!(
                    "source `{}`: not a folder; expected synthetic, DIR, folder:DIR, raw:FILE or v4l:/dev/videoN",
                    dir.display()
                );
            }
            Ok(Box::new(folder::FolderSource::with_split(
                dir,
                opts.split.as_deref(),
                opts.fps,
                opts.looping,
            )?))
        }
    }
}

#[cfg(feature = "gstreamer")]
fn open_gst(pipeline: &str) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(gst::GstSource::open(pipeline)?))
}

#[cfg(not(feature = "gstreamer"))]
fn open_gst(pipeline: &str) -> Result<Box<dyn FrameSource>> {
    bail!(
        "gst:{pipeline}: this srsnet was built without GStreamer; rebuild with `cargo build --release --features gstreamer` \
         (needs `apt-get install libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev`)"
    )
}

#[cfg(feature = "camera")]
fn open_camera(dev: &Path, opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    use camera::{CameraSource, CaptureDevice, CaptureFormat, Opener};
    use v4l2::{CameraRequest, V4lDevice};
    let req = CameraRequest {
        format: opts.format.map(CaptureFormat::from),
        width: opts.size.map(|s| s.0),
        height: opts.size.map(|s| s.1),
        fps: opts.fps.map(|f| f.round().max(1.0) as u32),
    };
    let path = dev.to_path_buf();
    let opener: Opener = Box::new(move || Ok(Box::new(V4lDevice::open(&path, &req)?) as Box<dyn CaptureDevice>));
    Ok(Box::new(CameraSource::new(opener, opts.reconnect)?))
}

#[cfg(not(feature = "camera"))]
fn open_camera(dev: &Path, _opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    bail!(
        "camera {}: this srsnet was built without live capture; rebuild with `cargo build --release --features camera` \
         (needs libclang, e.g. `apt-get install libclang-dev`)",
        dev.display()
    )
}

/// Paces a replay at `fps` frames per second (None: as fast as possible).
pub struct Pacer {
    start: Instant,
    period: Option<Duration>,
    emitted: u64,
}

impl Pacer {
    /// A pacer starting now; `fps` must be positive and finite when given.
    pub fn new(fps: Option<f64>) -> Self {
        let period = fps
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(|f| Duration::from_secs_f64(1.0 / f));
        Self {
            start: Instant::now(),
            period,
            emitted: 0,
        }
    }

    /// Waits until the next frame is due and returns its timestamp since the start; None when
    /// `stop` was requested during the wait.
    pub fn wait(&mut self, stop: &Stop) -> Option<Duration> {
        let due = self.period.map(|p| p.mul_f64(self.emitted as f64));
        if let Some(due) = due {
            let now = self.start.elapsed();
            if due > now && !stop.sleep(due - now) {
                return None;
            }
        }
        self.emitted += 1;
        Some(due.unwrap_or_else(|| self.start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_in_one_place() {
        assert_eq!("synthetic".parse(), Ok(SourceSpec::Synthetic));
        assert_eq!("raw:a.y16".parse(), Ok(SourceSpec::Raw("a.y16".into())));
        assert_eq!("v4l:/dev/video0".parse(), Ok(SourceSpec::Camera("/dev/video0".into())));
        assert_eq!("folder:seq".parse(), Ok(SourceSpec::Folder("seq".into())));
        assert_eq!("seq".parse(), Ok(SourceSpec::Folder("seq".into())));
        assert_eq!(
            "gst:videotestsrc ! videoconvert".parse(),
            Ok(SourceSpec::Gst("videotestsrc ! videoconvert".into()))
        );
        assert!("gst: ".parse::<SourceSpec>().unwrap_err().contains("needs a pipeline"));
        assert!("raw:".parse::<SourceSpec>().unwrap_err().contains("raw:"));
        assert!("".parse::<SourceSpec>().is_err());
    }

    #[test]
    fn a_slow_pacer_stops_at_once() {
        let stop = Stop::new();
        let mut p = Pacer::new(Some(0.001));
        assert!(p.wait(&stop).is_some(), "the first frame is due at once");
        stop.request();
        let t0 = Instant::now();
        assert!(p.wait(&stop).is_none());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
