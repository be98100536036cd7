//! The pipeline: a thread per stage (capture → preprocess → inference → postprocess → emit)
//! joined by bounded channels. This is the only place that knows the topology.
//!
//! Policies are values: a live source never blocks capture (when the first queue is full the
//! oldest waiting frame is dropped and counted); replayed, raw and synthetic sources are
//! lossless and ordered (every stage blocks instead). A stop request (Ctrl-C, SIGTERM) stops
//! capture; the frames already captured drain through every stage, the sinks flush, and the
//! run returns its statistics.

use super::frame::RawFrame;
use super::postprocess::{AreaLimits, Confirmer};
use super::preprocess::Preprocessor;
use super::sinks::Sinks;
use super::sources::{FrameSource, SourceError};
use super::stats::{RunStats, StageTimes};
use crate::image_io::Frame;
use crate::infer::{Detection, Segmenter};
use anyhow::Result;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How the pipeline runs.
pub struct PipelineConfig {
    pub threshold: f32,
    /// Frames per inference call (1: lowest latency).
    pub batch: usize,
    pub area: AreaLimits,
    pub confirm: Option<Confirmer>,
    /// Print statistics every this many frames (to stderr).
    pub stats_every: Option<u64>,
    /// Queue length between stages.
    pub queue: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            batch: 1,
            area: AreaLimits::default(),
            confirm: None,
            stats_every: None,
            queue: 4,
        }
    }
}

/// A frame with what each stage added.
struct Item {
    raw: RawFrame,
    times: StageTimes,
    frame: Option<Frame>,
    detection: Option<Detection>,
}

/// The result of a run: statistics, and the fatal source error that ended it, if any.
pub struct RunReport {
    pub stats: RunStats,
    pub source_failure: Option<String>,
}

/// Runs `source` through the pipeline until it ends or `stop` is set.
pub fn run(
    mut source: Box<dyn FrameSource>,
    mut pre: Preprocessor,
    segmenter: Segmenter,
    mut sinks: Sinks,
    mut cfg: PipelineConfig,
    stop: Arc<AtomicBool>,
) -> Result<RunReport> {
    let live = source.is_live();
    let started = Instant::now();
    let dropped = Arc::new(AtomicU64::new(0));
    let source_errors = Arc::new(AtomicU64::new(0));
    let q = cfg.queue.max(1);
    let (cap_tx, cap_rx) = bounded::<Item>(q);
    let (pre_tx, pre_rx) = bounded::<Item>(q);
    let (inf_tx, inf_rx) = bounded::<Item>(q);
    let (post_tx, post_rx) = bounded::<Item>(q);
    let (err_tx, err_rx) = crossbeam_channel::unbounded::<String>();

    std::thread::scope(|s| -> Result<RunReport> {
        // Capture.
        let capture = {
            let (stop, dropped, source_errors, cap_rx_for_drops) =
                (stop.clone(), dropped.clone(), source_errors.clone(), cap_rx.clone());
            s.spawn(move || -> Option<String> {
                while !stop.load(Ordering::SeqCst) {
                    let t0 = Instant::now();
                    let raw = match source.next_frame() {
                        None => return None,
                        Some(Ok(raw)) => raw,
                        Some(Err(SourceError::Frame(msg))) => {
                            eprintln!("warning: {msg}");
                            source_errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Some(Err(SourceError::Fatal(msg))) => return Some(msg),
                    };
                    let mut times = StageTimes::default();
                    times.0[0] = t0.elapsed().as_secs_f64();
                    let item = Item {
                        raw,
                        times,
                        frame: None,
                        detection: None,
                    };
                    if live {
                        push_dropping_oldest(&cap_tx, &cap_rx_for_drops, item, &dropped);
                    } else if cap_tx.send(item).is_err() {
                        return None;
                    }
                }
                None
            })
        };

        // Preprocess.
        let err_pre = err_tx.clone();
        s.spawn(move || {
            for mut item in cap_rx.iter() {
                let t0 = Instant::now();
                match pre.process(&item.raw) {
                    Ok(f) => item.frame = Some(f),
                    Err(e) => {
                        let _ = err_pre.send(format!("frame {} ({}): {e:#}", item.raw.index, item.raw.origin));
                        continue;
                    }
                }
                item.times.0[1] = t0.elapsed().as_secs_f64();
                if pre_tx.send(item).is_err() {
                    return;
                }
            }
        });

        // Inference, in micro-batches of up to `batch` frames already waiting.
        let err_inf = err_tx.clone();
        let (threshold, batch) = (cfg.threshold, cfg.batch.max(1));
        s.spawn(move || {
            while let Ok(first) = pre_rx.recv() {
                let mut items = vec![first];
                while items.len() < batch {
                    match pre_rx.try_recv() {
                        Ok(i) => items.push(i),
                        Err(_) => break,
                    }
                }
                let t0 = Instant::now();
                let frames: Vec<Frame> = items.iter().map(|i| i.frame.clone().expect("preprocessed")).collect();
                match segmenter.detect_batch(&frames, threshold) {
                    Ok(dets) => {
                        let per = t0.elapsed().as_secs_f64() / items.len() as f64;
                        for (mut item, det) in items.into_iter().zip(dets) {
                            item.times.0[2] = per;
                            item.detection = Some(det);
                            if inf_tx.send(item).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        for item in items {
                            let _ = err_inf.send(format!(
                                "frame {} ({}): inference failed: {e:#}",
                                item.raw.index, item.raw.origin
                            ));
                        }
                    }
                }
            }
        });

        // Postprocess.
        let (area, mut confirm) = (cfg.area, cfg.confirm.take());
        s.spawn(move || {
            for mut item in inf_rx.iter() {
                let t0 = Instant::now();
                if let Some(det) = item.detection.as_mut() {
                    let mut targets: Vec<_> = std::mem::take(&mut det.targets)
                        .into_iter()
                        .filter(|t| area.keep(t))
                        .collect();
                    if let Some(c) = confirm.as_mut() {
                        targets = c.confirm(targets);
                    }
                    det.targets = targets;
                }
                item.times.0[3] = t0.elapsed().as_secs_f64();
                if post_tx.send(item).is_err() {
                    return;
                }
            }
        });
        drop(err_tx);

        // Emit (this thread).
        let mut stats = RunStats::default();
        let mut emit_error = None;
        for item in post_rx.iter() {
            let t0 = Instant::now();
            let (Some(frame), Some(det)) = (&item.frame, &item.detection) else {
                continue;
            };
            let latency = item.raw.captured_at.elapsed();
            let mut record = json!({
                "frame": item.raw.index,
                "timestamp_s": item.raw.timestamp.as_secs_f64(),
                "origin": item.raw.origin,
                "width": item.raw.width,
                "height": item.raw.height,
                "latency_ms": latency.as_secs_f64() * 1e3,
                "targets": det.targets,
            });
            if let Some(truth) = &item.raw.truth {
                record["truth"] = json!(truth.iter().map(|(x, y)| json!({"x": x, "y": y})).collect::<Vec<_>>());
                stats.score.add(&det.targets, truth, item.raw.width, item.raw.height);
            }
            let mask = det.mask(cfg.threshold);
            if let Err(e) = sinks.emit(&record, frame, item.raw.index, Some(&mask), &det.targets, live) {
                emit_error = Some(e);
                stop.store(true, Ordering::SeqCst);
                break;
            }
            let mut times = item.times;
            times.0[4] = t0.elapsed().as_secs_f64();
            stats.record(&times, item.raw.captured_at.elapsed());
            for msg in err_rx.try_iter() {
                eprintln!("warning: {msg}");
                stats.frame_errors += 1;
            }
            if cfg.stats_every.is_some_and(|n| n > 0 && stats.frames % n == 0) {
                stats.dropped = dropped.load(Ordering::Relaxed);
                stats.wall = started.elapsed();
                eprint!("{}", stats.summary());
            }
        }
        // Drain whatever is left so the capture thread can finish.
        for _ in post_rx.try_iter() {}
        for msg in err_rx.iter() {
            eprintln!("warning: {msg}");
            stats.frame_errors += 1;
        }
        let source_failure = capture
            .join()
            .unwrap_or_else(|_| Some("capture thread panicked".into()));
        sinks.flush()?;
        if let Some(e) = emit_error {
            return Err(e);
        }
        stats.dropped = dropped.load(Ordering::Relaxed);
        stats.source_errors = source_errors.load(Ordering::Relaxed);
        stats.wall = started.elapsed();
        Ok(RunReport { stats, source_failure })
    })
}

/// Sends without blocking: when the queue is full, the oldest waiting frame is dropped.
fn push_dropping_oldest(tx: &Sender<Item>, rx: &Receiver<Item>, mut item: Item, dropped: &AtomicU64) {
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
