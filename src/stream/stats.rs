//! Run statistics: per-stage latency percentiles, end-to-end latency, throughput, drops and
//! (where ground truth rides along) running Pd/Fa.

use super::postprocess::PointScore;
use serde_json::json;
use std::time::Duration;

/// The pipeline's stages, in order.
pub const STAGES: [&str; 5] = ["capture", "preprocess", "inference", "postprocess", "emit"];

/// Time spent in each stage by one frame, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes(pub [f64; 5]);

#[derive(Debug, Default)]
pub struct RunStats {
    stage: [Vec<f64>; 5],
    end_to_end: Vec<f64>,
    pub frames: u64,
    pub dropped: u64,
    pub source_errors: u64,
    pub frame_errors: u64,
    pub score: PointScore,
    pub wall: Duration,
}

/// p50/p90/p99/max of a sample, in milliseconds.
fn percentiles_ms(v: &[f64]) -> serde_json::Value {
    if v.is_empty() {
        return json!(null);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| s[((p * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)] * 1e3;
    json!({ "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s[s.len() - 1] * 1e3 })
}

impl RunStats {
    pub fn record(&mut self, times: &StageTimes, end_to_end: Duration) {
        for (k, &t) in times.0.iter().enumerate() {
            self.stage[k].push(t);
        }
        self.end_to_end.push(end_to_end.as_secs_f64());
        self.frames += 1;
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut stages = serde_json::Map::new();
        for (k, name) in STAGES.iter().enumerate() {
            stages.insert(name.to_string(), percentiles_ms(&self.stage[k]));
        }
        let secs = self.wall.as_secs_f64();
        let mut v = json!({
            "frames": self.frames,
            "dropped": self.dropped,
            "source_errors": self.source_errors,
            "frame_errors": self.frame_errors,
            "wall_s": secs,
            "throughput_fps": if secs > 0.0 { self.frames as f64 / secs } else { 0.0 },
            "latency_ms": stages,
            "end_to_end_ms": percentiles_ms(&self.end_to_end),
        });
        if self.score.frames > 0 {
            v["pd"] = json!(self.score.pd());
            v["fa"] = json!(self.score.fa());
            v["targets"] = json!(self.score.targets);
            v["hits"] = json!(self.score.hits);
        }
        v
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let j = self.to_json();
        let mut out = format!(
            "frames {}  dropped {}  source errors {}  frame errors {}  throughput {:.2} fps over {:.1} s\n",
            self.frames,
            self.dropped,
            self.source_errors,
            self.frame_errors,
            j["throughput_fps"].as_f64().unwrap_or(0.0),
            self.wall.as_secs_f64()
        );
        out.push_str("latency ms      p50      p90      p99      max\n");
        let row = |name: &str, v: &serde_json::Value| {
            let g = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            format!(
                "{name:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                g("p50"),
                g("p90"),
                g("p99"),
                g("max")
            )
        };
        for name in STAGES {
            out.push_str(&row(name, &j["latency_ms"][name]));
        }
        out.push_str(&row("end-to-end", &j["end_to_end_ms"]));
        if self.score.frames > 0 {
            out.push_str(&format!(
                "Pd {:.4} ({} of {} targets)  Fa {:.2} ×1e-6\n",
                self.score.pd(),
                self.score.hits,
                self.score.targets,
                self.score.fa() * 1e6
            ));
        }
        out
    }
}
