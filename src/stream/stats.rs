//! Run statistics: per-stage latency percentiles, end-to-end latency, throughput, drops and
//! errors, and (where ground truth rides along) Pd, Fa and false targets per frame scored by
//! the same rule as `srsnet eval`.
//!
//! Latencies go into fixed-size logarithmic histograms (100 bins per decade, so a percentile
//! is within 2.3 % of the exact one; the maximum is exact): a run that lasts for days keeps
//! constant memory.

use super::publish::PublishCounts;
use crate::eval::metrics::MetricAccumulator;
use serde_json::json;
use std::time::Duration;

/// Time one frame spent in each stage, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Waiting for and reading the frame from the source.
    pub capture: f64,
    /// Calibration, intensity mapping, channel expansion.
    pub preprocess: f64,
    /// The model (this frame's share of its micro-batch).
    pub inference: f64,
    /// Area limits and temporal confirmation.
    pub postprocess: f64,
    /// Writing the outputs.
    pub emit: f64,
}

/// The stages' names, in pipeline order.
pub const STAGES: [&str; 5] = ["capture", "preprocess", "inference", "postprocess", "emit"];

impl StageTimes {
    /// The times in the order of [`STAGES`].
    pub fn in_order(&self) -> [f64; 5] {
        [
            self.capture,
            self.preprocess,
            self.inference,
            self.postprocess,
            self.emit,
        ]
    }
}

const PER_DECADE: f64 = 100.0;
/// The histogram spans 100 ns to 10⁴ s.
const LOG_MIN: f64 = -7.0;
const BINS: usize = 1100;

/// A latency histogram with logarithmic bins.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BINS],
            n: 0,
            max: 0.0,
        }
    }
}

impl Histogram {
    /// Adds one duration in seconds.
    pub fn add(&mut self, seconds: f64) {
        let s = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        let bin = if s <= 0.0 {
            0
        } else {
            ((s.log10() - LOG_MIN) * PER_DECADE)
                .floor()
                .clamp(0.0, (BINS - 1) as f64) as usize
        };
        self.counts[bin] += 1;
        self.n += 1;
        self.max = self.max.max(s);
    }

    /// Samples added.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Non-empty bins merged to `per_decade` per decade (a divisor of 100): (from, to, count),
    /// the bounds in milliseconds, in increasing order. For plots.
    pub fn coarse_bins_ms(&self, per_decade: u32) -> Vec<(f64, f64, u64)> {
        let group = (PER_DECADE as usize / per_decade.clamp(1, 100) as usize).max(1);
        let edge = |b: usize| 10f64.powf(b as f64 / PER_DECADE + LOG_MIN) * 1e3;
        self.counts
            .chunks(group)
            .enumerate()
            .filter_map(|(k, c)| {
                let n: u64 = c.iter().sum();
                (n > 0).then(|| (edge(k * group), edge((k + 1) * group), n))
            })
            .collect()
    }

    /// The `q` quantile in seconds (the geometric centre of its bin, capped by the maximum).
    pub fn quantile(&self, q: f64) -> f64 {
        let target = ((q * self.n as f64).ceil() as u64).clamp(1, self.n.max(1));
        let mut acc = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return 10f64.powf((b as f64 + 0.5) / PER_DECADE + LOG_MIN).min(self.max);
            }
        }
        self.max
    }

    /// p50/p90/p99/max in milliseconds, or null when empty.
    pub fn to_json_ms(&self) -> serde_json::Value {
        if self.n == 0 {
            return json!(null);
        }
        let q = |p| self.quantile(p) * 1e3;
        json!({ "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": self.max * 1e3 })
    }
}

/// Everything a run counts.
#[derive(Debug, Default)]
pub struct RunStats {
    stage: [Histogram; 5],
    end_to_end: Histogram,
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames whose results were written.
    pub frames: u64,
    /// Frames dropped by the live-source policy (the oldest waiting frame when capture is ahead).
    pub dropped: u64,
    /// Frames the source could not deliver (unreadable file, short buffer).
    pub source_errors: u64,
    /// Frames that failed in a stage (preprocessing, inference).
    pub frame_errors: u64,
    /// Frames discarded because the run was aborted (an output failed).
    pub discarded: u64,
    /// Detections rejected as static clutter (`--static-clutter`).
    pub clutter: u64,
    /// Frames the static-clutter filter judged still (the only ones where it rejects).
    pub still_frames: u64,
    /// Detections the motion gate rejected as old against the scene (`--motion-gate`).
    pub motion_gated: u64,
    /// Detections the motion gate judged (the rest it kept for want of history or contrast).
    pub motion_judged: u64,
    /// Detections the weights' second stage rejected (`srsnet train verifier`).
    pub verifier_rejected: u64,
    /// Pixel values the scene-based defect map replaced, over all frames (`--defect-frames`).
    pub defects: u64,
    /// The most pixels it replaced in one frame.
    pub defects_most: u64,
    /// Detection scoring against the ground truth that rode along, when any did.
    pub score: MetricAccumulator,
    /// True when the truth included masks (IoU, nIoU and F1 are then meaningful).
    pub mask_scored: bool,
    /// What happened to the messages published to a broker (`--publish`).
    pub publish: Option<PublishCounts>,
    /// Wall time of the run.
    pub wall: Duration,
}

impl RunStats {
    /// Records one emitted frame's stage times and capture-to-emit latency.
    pub fn record(&mut self, times: &StageTimes, end_to_end: Duration) {
        for (h, t) in self.stage.iter_mut().zip(times.in_order()) {
            h.add(t);
        }
        self.end_to_end.add(end_to_end.as_secs_f64());
        self.frames += 1;
    }

    /// Each stage's latency histogram in pipeline order, then the end-to-end one.
    pub fn latency_histograms(&self) -> Vec<(&'static str, &Histogram)> {
        STAGES
            .iter()
            .copied()
            .zip(&self.stage)
            .chain([("end-to-end", &self.end_to_end)])
            .collect()
    }

    /// Frames that were asked for and not processed (source and stage errors).
    pub fn failed(&self) -> u64 {
        self.source_errors + self.frame_errors
    }

    /// The statistics as JSON (`--stats-json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut stages = serde_json::Map::new();
        for (name, h) in STAGES.iter().zip(&self.stage) {
            stages.insert(name.to_string(), h.to_json_ms());
        }
        let secs = self.wall.as_secs_f64();
        let mut v = json!({
            "captured": self.captured,
            "frames": self.frames,
            "dropped": self.dropped,
            "source_errors": self.source_errors,
            "frame_errors": self.frame_errors,
            "discarded": self.discarded,
            "static_clutter": self.clutter,
            "still_frames": self.still_frames,
            "motion_gated": self.motion_gated,
            "motion_judged": self.motion_judged,
            "verifier_rejected": self.verifier_rejected,
            "defect_pixels": { "replaced": self.defects, "most_in_a_frame": self.defects_most },
            "wall_s": secs,
            "throughput_fps": if secs > 0.0 { self.frames as f64 / secs } else { 0.0 },
            "latency_ms": stages,
            "end_to_end_ms": self.end_to_end.to_json_ms(),
        });
        if let Some(p) = &self.publish {
            v["publish"] = json!(p);
        }
        if self.score.images() > 0 {
            let m = self.score.finish();
            v["pd"] = json!(m.pd);
            v["fa"] = json!(m.fa);
            v["targets"] = json!(m.targets);
            v["hits"] = json!(m.hits);
            v["false_targets_per_frame"] = json!(m.false_targets_per_frame);
            if self.mask_scored {
                v["iou"] = json!(m.iou);
                v["niou"] = json!(m.niou);
                v["f1"] = json!(m.f1);
            }
        }
        v
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let secs = self.wall.as_secs_f64();
        let fps = if secs > 0.0 { self.frames as f64 / secs } else { 0.0 };
        let mut out = format!(
            "frames {}  dropped {}  source errors {}  frame errors {}  throughput {fps:.2} fps over {secs:.1} s\n",
            self.frames, self.dropped, self.source_errors, self.frame_errors,
        );
        if self.clutter > 0 {
            out.push_str(&format!(
                "detections rejected as static clutter: {} ({} of {} frames still)\n",
                self.clutter, self.still_frames, self.frames
            ));
        }
        if self.motion_judged > 0 {
            out.push_str(&format!(
                "detections rejected as old against the scene: {} of {} judged\n",
                self.motion_gated, self.motion_judged
            ));
        }
        if self.verifier_rejected > 0 {
            out.push_str(&format!(
                "detections rejected by the weights' verifier: {}\n",
                self.verifier_rejected
            ));
        }
        if self.defects > 0 {
            out.push_str(&format!(
                "stuck pixels replaced by the defect map: {} in all, at most {} in a frame\n",
                self.defects, self.defects_most
            ));
        }
        if let Some(p) = &self.publish {
            out.push_str(&format!(
                "published {}  delivered {}  dropped (buffer full) {}  disconnections {}\n",
                p.published, p.delivered, p.overflowed, p.disconnections
            ));
        }
        if self.discarded > 0 {
            out.push_str(&format!("discarded after an output failure: {}\n", self.discarded));
        }
        out.push_str("latency ms      p50      p90      p99      max\n");
        let row = |name: &str, h: &Histogram| {
            if h.is_empty() {
                return format!("{name:<12} {:>8} {:>8} {:>8} {:>8}\n", "-", "-", "-", "-");
            }
            format!(
                "{name:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                h.quantile(0.5) * 1e3,
                h.quantile(0.9) * 1e3,
                h.quantile(0.99) * 1e3,
                h.max * 1e3
            )
        };
        for (name, h) in STAGES.iter().zip(&self.stage) {
            out.push_str(&row(name, h));
        }
        out.push_str(&row("end-to-end", &self.end_to_end));
        if self.score.images() > 0 {
            let m = self.score.finish();
            out.push_str(&format!(
                "Pd {:.4} ({} of {} targets)  Fa {:.2} ×1e-6  false targets per frame {:.2}\n",
                m.pd,
                m.hits,
                m.targets,
                m.fa * 1e6,
                m.false_targets_per_frame
            ));
            if self.mask_scored {
                out.push_str(&format!("IoU {:.4}  nIoU {:.4}  F1 {:.4}\n", m.iou, m.niou, m.f1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bin() {
        let mut h = Histogram::default();
        for i in 1..=1000 {
            h.add(i as f64 * 1e-3);
        }
        for (q, exact) in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99)] {
            let got = h.quantile(q);
            assert!((got / exact - 1.0).abs() < 0.025, "q{q}: {got} vs {exact}");
        }
        assert_eq!(h.quantile(1.0), 1.0);
        assert_eq!(h.len(), 1000);
    }
}
