//! The frame that travels through the pipeline: its index, timestamps, pixels and any
//! ground truth, so no stage needs a side channel.

use std::time::{Duration, Instant};

use crate::dataset::Truth;
pub use crate::image_io::Pixels;

/// A frame from a source.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// 0-based position in the stream (gaps mean dropped frames).
    pub index: u64,
    /// Source timestamp (since the stream started, or the camera's clock).
    pub timestamp: Duration,
    /// When the frame entered the pipeline (for capture-to-emit latency).
    pub captured_at: Instant,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// The pixels, row-major.
    pub pixels: Pixels,
    /// Where it came from (file name, device), for messages.
    pub origin: String,
    /// Ground truth, when the source knows it: target centres (x = column, y = row) or a mask.
    pub truth: Option<Truth>,
}
