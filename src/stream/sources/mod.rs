//! Frame sources behind one trait: synthetic scenes, replayed image folders, raw recordings
//! and V4L2 cameras.

pub mod camera;
pub mod folder;
pub mod raw;
pub mod synthetic;
#[cfg(feature = "v4l")]
pub mod v4l2;

use super::frame::RawFrame;

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
    /// The next frame, an error about one frame, or `None` at the end of the stream.
    fn next_frame(&mut self) -> Option<Result<RawFrame, SourceError>>;
    /// Live sources (cameras) must never be blocked: the pipeline drops old frames instead.
    fn is_live(&self) -> bool;
    /// A one-line description for logs.
    fn describe(&self) -> String;
}

/// Paces a replay at `fps` frames per second (None: as fast as possible).
pub struct Pacer {
    start: std::time::Instant,
    period: Option<std::time::Duration>,
    emitted: u64,
}

impl Pacer {
    pub fn new(fps: Option<f64>) -> Self {
        let period = fps
            .filter(|f| *f > 0.0)
            .map(|f| std::time::Duration::from_secs_f64(1.0 / f));
        Self {
            start: std::time::Instant::now(),
            period,
            emitted: 0,
        }
    }

    /// Sleeps until frame number `emitted` is due; returns its timestamp since the start.
    pub fn wait(&mut self) -> std::time::Duration {
        let due = self.period.map(|p| p * self.emitted as u32);
        if let Some(due) = due {
            let now = self.start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.emitted += 1;
        due.unwrap_or_else(|| self.start.elapsed())
    }
}
