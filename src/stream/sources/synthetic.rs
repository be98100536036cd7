//! `--source synthetic`: the project's generator of IR-like frames with known targets.

use super::{FrameSource, Pacer, SourceError};
use crate::dataset::Truth;
use crate::limits::check_frame_size;
use crate::stream::frame::RawFrame;
use crate::stream::stop::Stop;
use crate::synthetic::{quantise, BitDepth, Scene, SceneConfig};
use std::time::Instant;

/// Synthetic frames, quantised as the simulated sensor delivers them.
pub struct SyntheticSource {
    scene: Scene,
    bits: BitDepth,
    count: Option<u64>,
    next: u64,
    pacer: Pacer,
}

/// The smallest synthetic frame side (the scene keeps targets 12 px from the border).
pub const MIN_SYNTHETIC_SIDE: usize = 32;

impl SyntheticSource {
    /// `count`: frames to generate (None: endless). The size is checked against the limits
    /// before the scene is allocated.
    pub fn new(cfg: SceneConfig, bits: BitDepth, count: Option<u64>, fps: Option<f64>) -> anyhow::Result<Self> {
        check_frame_size("synthetic frame size", cfg.width, cfg.height)?;
        if cfg.width < MIN_SYNTHETIC_SIDE || cfg.height < MIN_SYNTHETIC_SIDE {
            anyhow::bail!(
                "synthetic frames must be at least {MIN_SYNTHETIC_SIDE}×{MIN_SYNTHETIC_SIDE}, got {}×{}",
                cfg.width,
                cfg.height
            );
        }
        Ok(Self {
            scene: Scene::new(cfg),
            bits,
            count,
            next: 0,
            pacer: Pacer::new(fps),
        })
    }
}

impl FrameSource for SyntheticSource {
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>> {
        if self.count.is_some_and(|c| self.next >= c) {
            return None;
        }
        let timestamp = self.pacer.wait(stop)?;
        let (img, truth) = self.scene.frame(self.next as usize);
        let cfg = self.scene.config();
        let frame = RawFrame {
            index: self.next,
            timestamp,
            captured_at: Instant::now(),
            width: cfg.width,
            height: cfg.height,
            pixels: quantise(&img, self.bits),
            origin: format!("synthetic#{}", self.next),
            truth: Some(Truth::Points(truth.iter().map(|t| (t.x, t.y)).collect())),
        };
        self.next += 1;
        Some(Ok(frame))
    }

    fn known_length(&self) -> Option<u64> {
        self.count
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        let c = self.scene.config();
        let bits = match self.bits {
            BitDepth::Eight => 8,
            BitDepth::Sixteen => 16,
        };
        format!(
            "synthetic {}×{} {bits}-bit, {} targets, seed {}",
            c.width, c.height, c.targets, c.seed
        )
    }
}
