//! The pipeline: a thread per stage joined by bounded channels. This is the only place that
//! knows the topology:
//!
//! ```text
//! capture ──Captured──▶ preprocess ──Prepared──▶ inference ──Detected──▶ postprocess ──Detected──▶ emit
//! ```
//!
//! Policies are values: a live source never blocks capture (when the first queue is full the
//! oldest waiting frame is dropped and counted); replayed, raw and synthetic sources are
//! lossless and ordered (every stage blocks instead).
//!
//! Ending: the source's end or a stop request ends capture and the frames already captured
//! drain through every stage. An output failure (or a reader that closed the pipe) aborts the
//! run: every stage discards what it holds, so no thread stays blocked on a full queue, and
//! the run returns at once with the failure named. A frame that fails in a stage is counted
//! and reported, and the others go on.

use super::frame::RawFrame;
use super::motion::MotionGate;
use super::postprocess::{AreaLimits, Confirmer, StaticClutter};
use super::preprocess::Preprocessor;
use super::register::{SceneTracker, Shift};
use super::sinks::{FrameOutputs, SinkError, Sinks};
use super::sources::{FrameSource, SourceError};
use super::stats::{RunStats, StageTimes};
use super::stop::Stop;
use crate::dataset::Truth;
use crate::image_io::Frame;
use crate::infer::{Detection, Segmenter, TargetRule};
use crate::progress::Progress;
use crate::temporal::MotionPlanes;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How the pipeline runs.
pub struct PipelineConfig {
    /// Which pixels are target: the operating point (threshold, and its grow threshold if any).
    pub rule: TargetRule,
    /// Frames per inference call (1: lowest latency).
    pub batch: usize,
    /// Area limits applied to every target.
    pub area: AreaLimits,
    /// Temporal confirmation, when asked for.
    pub confirm: Option<Confirmer>,
    /// Static-clutter rejection (fixed cameras), when asked for.
    pub static_clutter: Option<StaticClutter>,
    /// The motion gate (detections must be new against the scene), when asked for.
    pub motion_gate: Option<MotionGate>,
    /// Print statistics every this many frames (to stderr).
    pub stats_every: Option<u64>,
    /// Queue length between stages.
    pub queue: usize,
    /// Show progress on stderr when the source's length is known (a replay).
    pub progress: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            rule: TargetRule::plain(0.5),
            batch: 1,
            area: AreaLimits::default(),
            confirm: None,
            static_clutter: None,
            motion_gate: None,
            stats_every: None,
            queue: 4,
            progress: false,
        }
    }
}

/// A frame as the source delivered it.
struct Captured {
    raw: RawFrame,
    times: StageTimes,
}

/// A frame ready for the model, with the scene's shift since the previous frame when the run
/// registers the scene.
struct Prepared {
    raw: RawFrame,
    frame: Frame,
    step: Option<Shift>,
    times: StageTimes,
}

/// A frame with its detection (before and after postprocessing).
struct Detected {
    raw: RawFrame,
    frame: Frame,
    step: Option<Shift>,
    detection: Detection,
    times: StageTimes,
}

/// How a run ended, with its statistics.
pub struct RunReport {
    /// What was counted and measured.
    pub stats: RunStats,
    /// The fatal source error that ended the run, if any (everything before it was processed).
    pub source_failure: Option<String>,
    /// The output failure that aborted the run, if any.
    pub sink_failure: Option<String>,
    /// True when the reader of the JSON Lines output closed it (a normal end).
    pub output_closed: bool,
    /// Why some published messages never reached the broker, if any did not.
    pub publish_failure: Option<String>,
}

/// Counters the stages share.
#[derive(Default)]
struct Counters {
    captured: AtomicU64,
    dropped: AtomicU64,
    source_errors: AtomicU64,
    discarded: AtomicU64,
    clutter: AtomicU64,
    still: AtomicU64,
    gated: AtomicU64,
    gate_judged: AtomicU64,
    verifier_rejected: AtomicU64,
    /// Pixel replacements by the scene-based defect map, and the most in one frame.
    defects: AtomicU64,
    defects_most: AtomicU64,
}

/// Runs `source` through the pipeline until it ends, `stop` is requested, or an output fails.
pub fn run(
    source: Box<dyn FrameSource>,
    pre: Preprocessor,
    segmenter: Segmenter,
    sinks: Sinks,
    mut cfg: PipelineConfig,
    stop: &Stop,
) -> RunReport {
    let live = source.is_live();
    let progress = source
        .known_length()
        .filter(|_| cfg.progress)
        .map(|n| Progress::new("run", n));
    let started = Instant::now();
    let counters = Counters::default();
    let q = cfg.queue.max(1);
    let (cap_tx, cap_rx) = bounded::<Captured>(q);
    let (pre_tx, pre_rx) = bounded::<Prepared>(q);
    let (inf_tx, inf_rx) = bounded::<Detected>(q);
    let (post_tx, post_rx) = bounded::<Detected>(q);
    let (err_tx, err_rx) = crossbeam_channel::unbounded::<String>();
    let (rule, batch) = (cfg.rule, cfg.batch.max(1));
    let post = Post {
        area: cfg.area,
        confirm: cfg.confirm.take(),
        clutter: cfg.static_clutter.take(),
        gate: cfg.motion_gate.take(),
    };
    let scene = Scene::new(&post, segmenter.motion());

    let counters = &counters;
    let segmenter = &segmenter;
    std::thread::scope(|s| {
        let drops_rx = cap_rx.clone();
        let capture = s.spawn(move || capture(source, cap_tx, drops_rx, live, stop, counters));
        let e = err_tx.clone();
        s.spawn(move || preprocess(cap_rx, pre_tx, (pre, scene), e, stop, counters));
        let e = err_tx.clone();
        s.spawn(move || infer(pre_rx, inf_tx, segmenter, rule, batch, e, stop, counters));
        s.spawn(move || postprocess(inf_rx, post_tx, post, stop, counters));
        drop(err_tx);
        let mut report = emit(post_rx, err_rx, sinks, &cfg, live, stop, started, counters, progress);
        report.source_failure = capture
            .join()
            .unwrap_or_else(|_| Some("the capture thread panicked".into()));
        report.stats.captured = counters.captured.load(Ordering::Relaxed);
        report.stats.dropped = counters.dropped.load(Ordering::Relaxed);
        report.stats.source_errors = counters.source_errors.load(Ordering::Relaxed);
        report.stats.discarded = counters.discarded.load(Ordering::Relaxed);
        report.stats.clutter = counters.clutter.load(Ordering::Relaxed);
        report.stats.still_frames = counters.still.load(Ordering::Relaxed);
        report.stats.motion_gated = counters.gated.load(Ordering::Relaxed);
        report.stats.motion_judged = counters.gate_judged.load(Ordering::Relaxed);
        report.stats.verifier_rejected = counters.verifier_rejected.load(Ordering::Relaxed);
        report.stats.defects = counters.defects.load(Ordering::Relaxed);
        report.stats.defects_most = counters.defects_most.load(Ordering::Relaxed);
        report.stats.wall = started.elapsed();
        report
    })
}

/// Capture: reads the source until it ends or a stop is requested; returns the fatal source
/// error, if one ended it.
fn capture(
    mut source: Box<dyn FrameSource>,
    tx: Sender<Captured>,
    drops: Receiver<Captured>,
    live: bool,
    stop: &Stop,
    counters: &Counters,
) -> Option<String> {
    while !stop.is_requested() {
        let t0 = Instant::now();
        let raw = match source.next_frame(stop)? {
            Ok(raw) => raw,
            Err(SourceError::Frame(msg)) => {
                eprintln!("warning: {msg}");
                counters.source_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(SourceError::Fatal(msg)) => return Some(msg),
        };
        counters.captured.fetch_add(1, Ordering::Relaxed);
        let times = StageTimes {
            capture: t0.elapsed().as_secs_f64(),
            ..Default::default()
        };
        let item = Captured { raw, times };
        if live {
            push_dropping_oldest(&tx, &drops, item, &counters.dropped);
        } else if tx.send(item).is_err() {
            return None;
        }
    }
    None
}

/// Sends without blocking: when the queue is full, the oldest waiting frame is dropped.
fn push_dropping_oldest<T>(tx: &Sender<T>, rx: &Receiver<T>, mut item: T, dropped: &AtomicU64) {
    loop {
        match tx.try_send(item) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                if rx.try_recv().is_ok() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                item = back;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Counts a frame thrown away because the run was aborted.
fn discard(counters: &Counters) {
    counters.discarded.fetch_add(1, Ordering::Relaxed);
}

/// The scene's motion as the preprocess stage follows it: one registration per frame for every
/// stage that needs it (the motion plane of a motion model, static-clutter rejection that
/// follows pans, the motion gate), searching as far as the furthest-reaching one asks.
struct Scene {
    tracker: Option<SceneTracker>,
    motion: Option<MotionPlanes>,
}

impl Scene {
    fn new(post: &Post, motion: Option<crate::temporal::MotionInput>) -> Self {
        let motion = motion.map(MotionPlanes::new);
        let reach = [
            post.clutter.as_ref().map_or(0, StaticClutter::max_shift),
            post.gate.as_ref().map_or(0, MotionGate::register),
            motion.as_ref().map_or(0, MotionPlanes::reach),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Self {
            tracker: (reach > 0).then(|| SceneTracker::new(reach)),
            motion,
        }
    }

    /// The scene's shift since the previous frame, and the frame with its motion plane when
    /// the model takes one.
    fn follow(&mut self, frame: Frame) -> (Frame, Option<Shift>) {
        let step = self
            .tracker
            .as_mut()
            .and_then(|t| t.step(frame.plane(0), frame.width, frame.height));
        match self.motion.as_mut() {
            Some(m) => (m.attach(&frame, step), step),
            None => (frame, step),
        }
    }
}

/// Preprocess: calibration and intensity mapping, then the scene's registration.
fn preprocess(
    rx: Receiver<Captured>,
    tx: Sender<Prepared>,
    (mut pre, mut scene): (Preprocessor, Scene),
    errors: Sender<String>,
    stop: &Stop,
    counters: &Counters,
) {
    for Captured { raw, mut times } in rx.iter() {
        if stop.is_aborted() {
            discard(counters);
            continue;
        }
        let t0 = Instant::now();
        match pre.process(&raw) {
            Ok(frame) => {
                let (frame, step) = scene.follow(frame);
                times.preprocess = t0.elapsed().as_secs_f64();
                let replaced = pre.replaced_defects() as u64;
                counters.defects.fetch_add(replaced, Ordering::Relaxed);
                counters.defects_most.fetch_max(replaced, Ordering::Relaxed);
                if tx
                    .send(Prepared {
                        raw,
                        frame,
                        step,
                        times,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = errors.send(format!("frame {} ({}): {e:#}", raw.index, raw.origin));
            }
        }
    }
}

/// Inference, in micro-batches of up to `batch` frames already waiting.
#[allow(clippy::too_many_arguments)]
fn infer(
    rx: Receiver<Prepared>,
    tx: Sender<Detected>,
    segmenter: &Segmenter,
    rule: TargetRule,
    batch: usize,
    errors: Sender<String>,
    stop: &Stop,
    counters: &Counters,
) {
    while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        while items.len() < batch {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        if stop.is_aborted() {
            items.iter().for_each(|_| discard(counters));
            continue;
        }
        let t0 = Instant::now();
        // Split the frames off their metadata (no copy), so the batch borrows them as one slice.
        let (meta, frames): (Vec<_>, Vec<Frame>) =
            items.into_iter().map(|i| ((i.raw, i.step, i.times), i.frame)).unzip();
        match segmenter.detect_batch(&frames, rule) {
            Ok(dets) => {
                let per = t0.elapsed().as_secs_f64() / frames.len() as f64;
                for (((raw, step, mut times), frame), detection) in meta.into_iter().zip(frames).zip(dets) {
                    times.inference = per;
                    let rejected = detection.verifier_rejected as u64;
                    counters.verifier_rejected.fetch_add(rejected, Ordering::Relaxed);
                    if tx
                        .send(Detected {
                            raw,
                            frame,
                            step,
                            detection,
                            times,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) => {
                for (raw, _, _) in &meta {
                    let msg = format!("frame {} ({}): inference failed: {e:#}", raw.index, raw.origin);
                    let _ = errors.send(msg);
                }
            }
        }
    }
}

/// What the postprocess stage applies, in order.
struct Post {
    area: AreaLimits,
    confirm: Option<Confirmer>,
    clutter: Option<StaticClutter>,
    gate: Option<MotionGate>,
}

/// Postprocess: area limits, then static-clutter rejection, then the motion gate, then
/// temporal confirmation (which should count only what the filters before it kept).
fn postprocess(rx: Receiver<Detected>, tx: Sender<Detected>, mut post: Post, stop: &Stop, counters: &Counters) {
    for mut item in rx.iter() {
        if stop.is_aborted() {
            discard(counters);
            continue;
        }
        let t0 = Instant::now();
        let mut targets: Vec<_> = std::mem::take(&mut item.detection.targets)
            .into_iter()
            .filter(|t| post.area.keep(t))
            .collect();
        let step = item.step;
        if let Some(c) = post.clutter.as_mut() {
            let (rejected, still) = (c.rejected, c.still_frames);
            targets = c.filter(&item.frame, step, targets);
            counters.clutter.fetch_add(c.rejected - rejected, Ordering::Relaxed);
            counters.still.fetch_add(c.still_frames - still, Ordering::Relaxed);
        }
        if let Some(g) = post.gate.as_mut() {
            let (rejected, judged) = (g.rejected, g.judged);
            targets = g.filter(&item.frame, step, targets);
            counters.gated.fetch_add(g.rejected - rejected, Ordering::Relaxed);
            counters.gate_judged.fetch_add(g.judged - judged, Ordering::Relaxed);
        }
        if let Some(c) = post.confirm.as_mut() {
            targets = c.confirm(targets);
        }
        item.detection.targets = targets;
        item.times.postprocess = t0.elapsed().as_secs_f64();
        if tx.send(item).is_err() {
            return;
        }
    }
}

/// Emit (the calling thread): writes every frame's outputs, scores it against any truth that
/// rode along, and keeps the statistics. Returns when every upstream stage has finished.
#[allow(clippy::too_many_arguments)]
fn emit(
    rx: Receiver<Detected>,
    errors: Receiver<String>,
    mut sinks: Sinks,
    cfg: &PipelineConfig,
    live: bool,
    stop: &Stop,
    started: Instant,
    counters: &Counters,
    mut progress: Option<Progress>,
) -> RunReport {
    let mut report = RunReport {
        stats: RunStats::default(),
        source_failure: None,
        sink_failure: None,
        output_closed: false,
        publish_failure: None,
    };
    let stats = &mut report.stats;
    let mut failure: Option<SinkError> = None;
    for item in rx.iter() {
        if failure.is_some() {
            discard(counters);
            continue;
        }
        let t0 = Instant::now();
        let (raw, det) = (&item.raw, &item.detection);
        let mut record = json!({
            "frame": raw.index,
            "timestamp_s": raw.timestamp.as_secs_f64(),
            "captured_unix_s": unix_seconds(raw.captured_at),
            "origin": raw.origin,
            "width": raw.width,
            "height": raw.height,
            "latency_ms": raw.captured_at.elapsed().as_secs_f64() * 1e3,
            "targets": det.targets,
        });
        let mask = &det.target_mask;
        match &raw.truth {
            Some(Truth::Points(truth)) => {
                record["truth"] = json!(truth.iter().map(|(x, y)| json!({"x": x, "y": y})).collect::<Vec<_>>());
                let blobs: Vec<_> = det.targets.iter().map(|t| t.blob()).collect();
                stats.score.add_blobs(&blobs, truth, raw.width, raw.height);
            }
            Some(Truth::Mask(gt)) => {
                // Mask-labelled sets are scored as `srsnet eval --data` scores them: the
                // thresholded probability map against the mask.
                record["truth_pixels"] = json!(gt.iter().filter(|&&g| g).count());
                stats.score.add_mask(mask, gt, raw.width, raw.height);
                stats.mask_scored = true;
            }
            None => {}
        }
        if let Err(e) = sinks.emit(
            &FrameOutputs {
                record: &record,
                frame: &item.frame,
                index: raw.index,
                mask,
                targets: &det.targets,
                truth: raw.truth.as_ref(),
            },
            live,
        ) {
            failure = Some(e);
            stop.abort();
            continue;
        }
        let mut times = item.times;
        times.emit = t0.elapsed().as_secs_f64();
        stats.record(&times, raw.captured_at.elapsed());
        for msg in errors.try_iter() {
            say(&progress, &format!("warning: {msg}"));
            stats.frame_errors += 1;
        }
        if cfg.stats_every.is_some_and(|n| n > 0 && stats.frames.is_multiple_of(n)) {
            stats.dropped = counters.dropped.load(Ordering::Relaxed);
            stats.wall = started.elapsed();
            say(&progress, stats.summary().trim_end());
        }
        if let Some(p) = &mut progress {
            p.inc();
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    // Every stage has finished: the error channel is complete.
    for msg in errors.iter() {
        eprintln!("warning: {msg}");
        stats.frame_errors += 1;
    }
    // Flush what can be flushed: after a mask or overlay failure the JSON Lines written so far
    // still reach their reader (a second error is not news).
    if let Err(e) = sinks.flush() {
        failure.get_or_insert(e);
    }
    if let Some((counts, why)) = sinks.finish_publishing() {
        stats.publish = Some(counts);
        report.publish_failure = why;
    }
    match failure {
        Some(SinkError::Closed(_)) => report.output_closed = true,
        Some(SinkError::Failed(msg)) => report.sink_failure = Some(msg),
        None => {}
    }
    report
}

/// The wall-clock time (seconds since the Unix epoch) of a monotonic instant in the past: the
/// capture time a subscriber on another machine can compare with its own clock.
fn unix_seconds(at: Instant) -> f64 {
    let now = std::time::SystemTime::now();
    now.checked_sub(at.elapsed())
        .unwrap_or(now)
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A line on stderr that does not break the progress bar.
fn say(progress: &Option<Progress>, line: &str) {
    match progress {
        Some(p) => p.println(line),
        None => eprintln!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temporal::MotionInput;

    /// A textured 40×32 scene panned `pan` px to the right.
    fn view(pan: usize) -> Frame {
        let data = (0..40 * 32)
            .map(|k| {
                let (x, y) = ((k % 40) as f32 - pan as f32, (k / 40) as f32);
                0.4 + 0.1 * (0.3 * x).sin() * (0.2 * y).cos()
            })
            .collect();
        Frame::new(40, 32, 1, data).unwrap()
    }

    fn post(gate: Option<MotionGate>) -> Post {
        Post {
            area: AreaLimits::new(None, None).unwrap(),
            confirm: None,
            clutter: None,
            gate,
        }
    }

    #[test]
    fn the_scene_is_registered_only_when_a_stage_needs_it_and_reaches_as_far_as_the_furthest() {
        // Nothing needs it: no tracker, frames pass unchanged.
        let mut none = Scene::new(&post(None), None);
        assert!(none.tracker.is_none());
        let (f, step) = none.follow(view(0));
        assert_eq!((f.channels, step), (1, None));

        // A motion model: every frame gets its plane, and the shift is measured for the filters.
        let gate = MotionGate::new(3, 0.5, 4).unwrap();
        let mut scene = Scene::new(&post(Some(gate)), Some(MotionInput { lag: 2, reach: 6 }));
        let frames: Vec<_> = (0..4).map(|i| scene.follow(view(2 * i))).collect();
        assert!(frames.iter().all(|(f, _)| f.channels == 2));
        assert_eq!(frames[0].1, None, "nothing to register the first frame against");
        let step = frames[3].1.expect("a measured shift");
        assert!((step.dx - 2.0).abs() < 0.1 && step.dy.abs() < 0.1, "{step:?}");
        // Two frames back, the 4-px pan is followed: the plane holds only the scene's residual
        // away from the columns that entered the view.
        let plane = frames[3].0.plane(1);
        let largest = (0..32)
            .flat_map(|y| (6..40).map(move |x| y * 40 + x))
            .map(|i| plane[i].abs())
            .fold(0.0f32, f32::max);
        assert!(largest < 0.02, "{largest}");
    }
}
