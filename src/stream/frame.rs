//! The frame that travels through the pipeline: its index, timestamps, pixels and any
//! ground truth, so no stage needs a side channel.

use std::time::{Duration, Instant};

/// Raw pixels as the source delivered them.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit gray.
    U8(Vec<u8>),
    /// 16-bit gray (14-bit cameras included), little-endian on the wire.
    U16(Vec<u16>),
}

impl Pixels {
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A frame from a source.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// 0-based position in the stream (gaps mean dropped frames).
    pub index: u64,
    /// Source timestamp (since the stream started, or the camera's clock).
    pub timestamp: Duration,
    /// When the frame entered the pipeline (for capture-to-emit latency).
    pub captured_at: Instant,
    pub width: usize,
    pub height: usize,
    pub pixels: Pixels,
    /// Where it came from (file name, device), for messages.
    pub origin: String,
    /// Ground-truth target positions (x = column, y = row), when the source knows them.
    pub truth: Option<Vec<(f64, f64)>>,
}
