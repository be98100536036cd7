//! `--source synthetic`: the project's generator of IR-like frames with known targets.

use super::{FrameSource, Pacer, SourceError};
use crate::stream::frame::{Pixels, RawFrame};
use crate::synthetic::{Scene, SceneConfig};
use std::time::Instant;

pub struct SyntheticSource {
    scene: Scene,
    bits: u8,
    count: Option<u64>,
    next: u64,
    pacer: Pacer,
}

impl SyntheticSource {
    /// `bits`: 8 or 16 (16-bit frames use the 14-bit range of typical thermal cores).
    pub fn new(cfg: SceneConfig, bits: u8, count: Option<u64>, fps: Option<f64>) -> anyhow::Result<Self> {
        if bits != 8 && bits != 16 {
            anyhow::bail!("synthetic frames are 8- or 16-bit, not {bits}");
        }
        if cfg.width < 32 || cfg.height < 32 {
            anyhow::bail!(
                "synthetic frames must be at least 32×32, got {}×{}",
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
    fn next_frame(&mut self) -> Option<Result<RawFrame, SourceError>> {
        if self.count.is_some_and(|c| self.next >= c) {
            return None;
        }
        let timestamp = self.pacer.wait();
        let (img, truth) = self.scene.frame(self.next as usize);
        let pixels = if self.bits == 8 {
            Pixels::U8(img.iter().map(|&v| (v * 255.0).round() as u8).collect())
        } else {
            // 14-bit range with an offset, as a radiometric core delivers.
            Pixels::U16(img.iter().map(|&v| (2000.0 + v * 12000.0).round() as u16).collect())
        };
        let cfg = self.scene.config();
        let frame = RawFrame {
            index: self.next,
            timestamp,
            captured_at: Instant::now(),
            width: cfg.width,
            height: cfg.height,
            pixels,
            origin: format!("synthetic#{}", self.next),
            truth: Some(truth.iter().map(|t| (t.x, t.y)).collect()),
        };
        self.next += 1;
        Some(Ok(frame))
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        let c = self.scene.config();
        format!(
            "synthetic {}×{} {}-bit, {} targets, seed {}",
            c.width, c.height, self.bits, c.targets, c.seed
        )
    }
}
