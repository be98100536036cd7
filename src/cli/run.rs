//! `srsnet run`: the streaming pipeline from a camera, a replayed folder or sequence, a raw
//! recording or the synthetic generator to JSON Lines, masks and overlays, with run statistics.

use super::{
    default_weights, parse_batch, parse_grow, parse_non_negative, parse_positive, parse_size, parse_threshold,
    target_rule, Grow,
};
use crate::calibration::Profile;
use crate::device::DeviceSpec;
use crate::infer::Segmenter;
use crate::limits::{MAX_STATIC_GAP, MAX_STATIC_REGISTER};
use crate::stream::defects::{self, DefectMap};
use crate::stream::pipeline::{self, PipelineConfig};
use crate::stream::postprocess::{parse_confirm_window, AreaLimits, Confirmer, StaticClutter};
use crate::stream::preprocess::{Preprocessor, Stretch};
use crate::stream::publish::{MqttUrl, PublishOptions, Publisher, DEFAULT_BUFFER};
use crate::stream::sinks::Sinks;
use crate::stream::sources::{self, PixelFormat, SourceOptions, SourceSpec};
use crate::stream::stop::Stop;
use crate::synthetic::{factory_profile, BitDepth};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Synthetic frames when `--count` is not given.
pub const DEFAULT_SYNTHETIC_COUNT: u64 = 30;

/// The most synthetic targets per frame.
pub const MAX_SYNTHETIC_TARGETS: usize = 1000;

/// How 16-bit frames map to intensities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StretchMode {
    /// Robust percentile stretch smoothed over time.
    Percentile,
    /// ÷65535.
    Fixed,
}

/// Arguments of `srsnet run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// synthetic | DIR | folder:DIR (a sequence: frames/ + centroids.csv; a labelled set: images/ + masks/) |
    /// raw:FILE | v4l:/dev/videoN | gst:'PIPELINE' (a `--features gstreamer` build; the pipeline up to a video
    /// stream, e.g. 'rtspsrc location=rtsp://cam/1 ! decodebin')
    #[arg(long, default_value = "synthetic")]
    pub source: SourceSpec,
    /// Weights file (default: the shipped weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `net` or `tophat[:SE:K[:MIN_CONTRAST]]`.
    #[arg(long, default_value = "net")]
    pub model: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// CPU engine options.
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Frame size WxH: required for raw files; requested from cameras; synthetic frame size
    /// (default 320x256).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// raw: y8 | y16 (default y16); camera: y8 (grey) | y16 | yuyv.
    #[arg(long, value_enum)]
    pub format: Option<PixelFormat>,
    /// Replay rate in frames per second (default: as fast as possible); camera: requested rate.
    #[arg(long, value_parser = parse_positive)]
    pub fps: Option<f64>,
    /// A labelled set (images/ + masks/) replays only the NAMEs of this split file.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Repeat a folder or raw recording for ever.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Frames to process, then stop: the synthetic source generates this many (default 30;
    /// 0 = endless); any other source stops after this many (default: all it has).
    #[arg(long)]
    pub count: Option<u64>,
    /// Synthetic scene seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Synthetic bit depth.
    #[arg(long, value_enum, default_value = "8")]
    pub bits: BitDepth,
    /// Synthetic targets per frame.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=MAX_SYNTHETIC_TARGETS as u64))]
    pub targets: u64,
    /// Keep retrying a camera that disappears instead of ending the stream.
    #[arg(long)]
    pub reconnect: bool,
    /// Calibration profile (NUC + bad pixels) for this camera. The synthetic camera comes with
    /// its own factory profile (`synthetic::factory_profile`) unless --uncalibrated is given.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Synthetic source: skip its factory calibration and see the raw sensor (stuck pixels included).
    #[arg(long, conflicts_with = "calibration")]
    pub uncalibrated: bool,
    /// 16-bit mapping.
    #[arg(long, value_enum, default_value = "percentile")]
    pub stretch: StretchMode,
    /// Probability threshold (default: the weights' recorded operating point, else 0.5).
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f32>,
    /// Grow each target from its pixels above the threshold over its connected pixels above
    /// this (hysteresis: fuller masks, never more targets), or `none` (default: the weights'
    /// recorded grow threshold, if any).
    #[arg(long, value_parser = parse_grow)]
    pub grow: Option<Grow>,
    /// Frames per inference call (1 = lowest latency).
    #[arg(long, default_value_t = 1, value_parser = parse_batch)]
    pub batch: usize,
    /// Frames each queue between two stages holds. Fewer bound memory and latency (each
    /// waiting frame carries its pixels and probability map: 2.6 MB at 640×512); more absorb jitter.
    #[arg(long, default_value_t = 4, value_parser = parse_queue)]
    pub queue: usize,
    /// Drop targets smaller than this many pixels.
    #[arg(long)]
    pub min_area: Option<usize>,
    /// Drop targets larger than this many pixels.
    #[arg(long)]
    pub max_area: Option<usize>,
    /// Temporal confirmation M/N: keep targets seen in M of the last N frames.
    #[arg(long, value_parser = parse_confirm_window)]
    pub confirm: Option<(usize, usize)>,
    /// Static-clutter rejection: a detection that stays within --static-radius px of the same
    /// place of the scene for more than N frames while the scene is still is clutter.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub static_clutter: Option<u64>,
    /// Let --static-clutter follow a panning camera: align each frame with the one before by
    /// the best translation of at most this many px, and keep the tracks on the scene (0: a
    /// fixed camera; any movement then starts the tracks afresh).
    #[arg(long, default_value_t = 0, requires = "static_clutter",
          value_parser = clap::value_parser!(u64).range(0..=MAX_STATIC_REGISTER as u64))]
    pub static_register: u64,
    /// Let a --static-clutter track live through this many still frames in which its point is
    /// not detected (0: it ends at its first miss).
    #[arg(long, default_value_t = 0, requires = "static_clutter",
          value_parser = clap::value_parser!(u64).range(0..=MAX_STATIC_GAP as u64))]
    pub static_gap: u64,
    /// The motion gate.
    #[command(flatten)]
    pub motion: super::MotionGateArgs,
    /// Radius (px) within which a detection counts as static.
    #[arg(long, default_value_t = 2.0, value_parser = parse_non_negative)]
    pub static_radius: f64,
    /// The scene is still while consecutive frames differ by less than this (mean absolute
    /// difference, intensity units in [0, 1]; with --static-register, after aligning them).
    #[arg(long, default_value_t = 0.01, value_parser = parse_non_negative)]
    pub still_below: f64,
    /// Scene-based defect map: a pixel that is an isolated spike (brighter or darker than each
    /// of its 8 neighbours by more than --defect-contrast) in each of the last N frames is a
    /// stuck pixel and is replaced by its neighbours' median; 0 turns it off.
    #[arg(long, default_value_t = defects::DEFAULT_FRAMES)]
    pub defect_frames: u32,
    /// Contrast (intensity units in [0, 1]) of an isolated spike for --defect-frames.
    #[arg(long, default_value_t = defects::DEFAULT_CONTRAST)]
    pub defect_contrast: f32,
    /// Radius (px) for temporal confirmation.
    #[arg(long, default_value_t = 3.0, value_parser = parse_non_negative)]
    pub confirm_radius: f64,
    /// JSON Lines output: `-` (stdout) or a file.
    #[arg(long, default_value = "-")]
    pub jsonl: String,
    /// Write mask PNGs here.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Write overlay PNGs (frame with numbered target boxes) here.
    #[arg(long)]
    pub overlays: Option<PathBuf>,
    /// Print statistics every N frames.
    #[arg(long)]
    pub stats_every: Option<u64>,
    /// Write the final statistics as JSON here.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Draw the per-stage latency histograms (and end-to-end) of this run into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress display for replays of a known length (a bar on a terminal, else a line
    /// every 10 s).
    #[arg(long)]
    pub no_progress: bool,
    /// Also publish every frame's record to an MQTT broker: mqtt://HOST[:PORT]/TOPIC (builds
    /// with `--features mqtt`). Never blocks the stream; undelivered messages are counted.
    #[arg(long, value_parser = parse_mqtt_url)]
    pub publish: Option<MqttUrl>,
    /// Camera id put into every published message (default: this machine's host name).
    #[arg(long)]
    pub camera_id: Option<String>,
    /// MQTT quality of service: 0 (at most once) or 1 (at least once).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub publish_qos: u8,
    /// Messages kept while the broker is unreachable; beyond this the oldest is dropped and counted.
    #[arg(long, default_value_t = DEFAULT_BUFFER, value_parser = parse_publish_buffer)]
    pub publish_buffer: usize,
}

impl RunArgs {
    fn source_options(&self) -> SourceOptions {
        SourceOptions {
            size: self.size,
            format: self.format,
            fps: self.fps,
            looping: self.looping,
            count: match (&self.source, self.count) {
                (SourceSpec::Synthetic, None) => Some(DEFAULT_SYNTHETIC_COUNT),
                (_, c) => c.filter(|&c| c > 0),
            },
            seed: self.seed,
            bits: self.bits,
            targets: self.targets as usize,
            reconnect: self.reconnect,
            split: self.split.clone(),
        }
    }

    /// Files and folders this run reads, which no output may replace.
    fn inputs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self
            .weights
            .iter()
            .chain(&self.calibration)
            .map(PathBuf::as_path)
            .collect();
        match &self.source {
            SourceSpec::Raw(p) | SourceSpec::Folder(p) | SourceSpec::Camera(p) => v.push(p),
            SourceSpec::Synthetic | SourceSpec::Gst(_) => {}
        }
        v
    }
}

/// The profile the run corrects frames with: `--calibration`'s, or for the synthetic camera
/// its factory profile (unless `--uncalibrated`), or none.
fn calibration(args: &RunArgs) -> Result<Option<Profile>> {
    if let Some(p) = &args.calibration {
        let profile = Profile::load(p).with_context(|| format!("loading calibration profile {}", p.display()))?;
        return Ok(Some(profile));
    }
    match (&args.source, args.uncalibrated) {
        (SourceSpec::Synthetic, false) => {
            let scene = sources::synthetic_scene(&args.source_options());
            let profile = factory_profile(&scene, args.bits).context("the synthetic camera's factory calibration")?;
            crate::heap::return_freed_memory();
            eprintln!(
                "calibration: the synthetic camera's factory profile ({}; --uncalibrated for the raw sensor)",
                profile.description
            );
            Ok(Some(profile))
        }
        (SourceSpec::Synthetic, true) => Ok(None),
        (_, true) => bail!(
            "--uncalibrated is for the synthetic source, which comes with a factory calibration; other sources \
             are uncorrected unless --calibration is given"
        ),
        _ => Ok(None),
    }
}

/// `--publish`: an `mqtt://` URL.
fn parse_mqtt_url(s: &str) -> Result<MqttUrl, String> {
    MqttUrl::parse(s).map_err(|e| e.to_string())
}

/// `--publish-buffer`: 1 to 1,000,000 messages.
fn parse_publish_buffer(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: expected 1 to 1000000 messages")),
    }
}

/// This machine's host name, or `srsnet` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "srsnet".into())
}

/// The publisher `--publish` asks for, connected (an unreachable broker fails the run here).
fn publisher(args: &RunArgs) -> Result<Option<Publisher>> {
    let Some(url) = &args.publish else { return Ok(None) };
    let camera_id = args.camera_id.clone().unwrap_or_else(host_name);
    if camera_id.is_empty() || camera_id.len() > 64 || !camera_id.chars().all(|c| c.is_ascii_graphic()) {
        bail!("--camera-id `{camera_id}`: expected 1 to 64 printable ASCII characters without spaces");
    }
    let p = Publisher::connect(PublishOptions {
        url: url.clone(),
        camera_id,
        qos: args.publish_qos,
        buffer: args.publish_buffer,
    })?;
    eprintln!("publishing to mqtt://{}/{}", url.broker(), url.topic);
    Ok(Some(p))
}

/// `--queue`: 1 to 64 frames.
fn parse_queue(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: expected a queue length from 1 to 64 frames")),
    }
}

/// Runs the pipeline and prints the summary to stderr. Returns the statistics; an error when a
/// frame could not be processed, an output failed, the source failed, or nothing was processed.
/// A reader that closes the JSON Lines pipe (`| head`) ends the run normally.
pub fn run(args: RunArgs) -> Result<serde_json::Value> {
    let area = AreaLimits::new(args.min_area, args.max_area)?;
    let static_clutter = args
        .static_clutter
        .map(|n| {
            StaticClutter::new(n as usize, args.static_radius, args.still_below as f32)?
                .following_pans(args.static_register as usize)?
                .bridging_gaps(args.static_gap as usize)
        })
        .transpose()?;
    let motion_gate = args.motion.gate()?;
    let confirm = args
        .confirm
        .map(|(m, n)| Confirmer::new(m, n, args.confirm_radius))
        .transpose()?;
    for out in [Some(Path::new(&args.jsonl)), args.stats_json.as_deref()]
        .into_iter()
        .flatten()
        .chain(args.masks.as_deref())
        .chain(args.overlays.as_deref())
        .chain(args.plot.as_deref())
    {
        super::refuse_overwrite(args.inputs(), out)?;
    }
    // Before the model: the factory profile's flat-field statistics are freed by then, and
    // the model's buffers reuse that memory instead of adding to the peak.
    let calibration = calibration(&args)?;
    let weights = args.weights.clone().unwrap_or_else(default_weights);
    let segmenter = Segmenter::new(&args.model, &weights, &args.device.open()?, args.engine.options())?;
    let rule = target_rule(args.threshold, args.grow, segmenter.default_rule())?;
    let source = sources::open(&args.source, &args.source_options())?;
    let described = format!("{}; model: {}", source.describe(), segmenter.name());
    eprintln!("source: {described}");
    let stretch = match args.stretch {
        StretchMode::Percentile => Stretch::default(),
        StretchMode::Fixed => Stretch::Fixed,
    };
    let mut pre = Preprocessor::new(calibration, stretch, segmenter.channels());
    if args.defect_frames > 0 {
        pre = pre.with_defect_map(DefectMap::new(args.defect_frames, args.defect_contrast)?);
    }
    let mut sinks = Sinks::new(Some(&args.jsonl), args.masks.clone(), args.overlays.clone())?;
    if let Some(p) = publisher(&args)? {
        sinks = sinks.publish_to(p);
    }
    let cfg = PipelineConfig {
        rule,
        batch: args.batch,
        area,
        confirm,
        static_clutter,
        motion_gate,
        stats_every: args.stats_every,
        queue: args.queue,
        progress: !args.no_progress,
    };
    let stop = Stop::new();
    stop.on_ctrl_c("stopping: draining the frames already captured");
    let report = pipeline::run(source, pre, segmenter, sinks, cfg, &stop);
    eprint!("{}", report.stats.summary());
    let stats = report.stats.to_json();
    if let Some(p) = &args.stats_json {
        crate::image_io::write_file(p, serde_json::to_string_pretty(&stats)?.as_bytes())?;
    }
    // With no frame there is nothing to draw, and the failure below says why.
    match &args.plot {
        Some(p) if report.stats.frames > 0 => {
            let title = format!("latency per stage, {} frames: {described}", report.stats.frames);
            crate::plot::latency(p, &title, &report.stats.latency_histograms())?;
            eprintln!("wrote {}", p.display());
        }
        Some(p) => eprintln!("no frame was processed: {} not written", p.display()),
        None => {}
    }
    if let Some(failure) = report.sink_failure {
        bail!(
            "output failed: {failure}; {} frames were written before it",
            report.stats.frames
        );
    }
    if report.output_closed {
        eprintln!(
            "the JSON Lines reader closed the output after {} frames; stopped",
            report.stats.frames
        );
        return Ok(stats);
    }
    if let Some(failure) = report.source_failure {
        bail!("{failure}");
    }
    if let Some(failure) = report.publish_failure {
        bail!("{failure}");
    }
    let failed = report.stats.failed();
    if failed > 0 {
        bail!(
            "{failed} frames could not be processed (see the warnings above); {} were",
            report.stats.frames
        );
    }
    if report.stats.frames == 0 && !stop.is_requested() {
        bail!("no frame was processed");
    }
    Ok(stats)
}
