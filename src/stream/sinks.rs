//! Where results go: JSON Lines per frame (stdout or a file), optional mask PNGs, optional
//! overlay PNGs (the frame with numbered target boxes). Every write is checked: a failure is a
//! [`SinkError`] that ends the run, and a closed reader (a broken pipe, as with `| head`) is a
//! normal end of the run, not an error. Records can also go to an MQTT broker (`publish`), which
//! never fails a frame: what it could not deliver is counted and reported at the end.

use super::publish::{PublishCounts, Publisher};
use crate::dataset::Truth;
use crate::detect::Target;
use crate::image_io::{write_mask_png, write_rgb_png, Frame};
use crate::overlay;
use anyhow::{Context, Result};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The reader of the output went away (broken pipe): the run ends normally.
    #[error("output closed by its reader: {0}")]
    Closed(String),
    /// A write failed (full disk, vanished folder, device error).
    #[error("{0}")]
    Failed(String),
}

impl SinkError {
    fn from_io(what: &str, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            SinkError::Closed(what.to_string())
        } else {
            SinkError::Failed(format!("{what}: {e}"))
        }
    }
}

/// What one frame produced, for the sinks.
#[derive(Clone, Copy)]
pub struct FrameOutputs<'a> {
    /// The JSON Lines record (also the published message).
    pub record: &'a serde_json::Value,
    /// The preprocessed frame (overlays draw on it).
    pub frame: &'a Frame,
    /// Its index in the stream (names the mask and overlay files).
    pub index: u64,
    /// The thresholded mask.
    pub mask: &'a [bool],
    /// The detections.
    pub targets: &'a [Target],
    /// The ground truth that rode along, if any.
    pub truth: Option<&'a Truth>,
}

/// The run's outputs.
pub struct Sinks {
    jsonl: Option<(String, Box<dyn Write + Send>)>,
    masks: Option<PathBuf>,
    overlays: Option<PathBuf>,
    publisher: Option<Publisher>,
}

impl Sinks {
    /// `jsonl`: `-` for stdout, a path, or None; mask and overlay folders are created.
    pub fn new(jsonl: Option<&str>, masks: Option<PathBuf>, overlays: Option<PathBuf>) -> Result<Self> {
        let jsonl: Option<(String, Box<dyn Write + Send>)> = match jsonl {
            None => None,
            Some("-") => Some((
                "JSON Lines on stdout".into(),
                Box::new(BufWriter::new(std::io::stdout())),
            )),
            Some(path) => Some((
                format!("JSON Lines file {path}"),
                Box::new(BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?,
                )),
            )),
        };
        for dir in [&masks, &overlays].into_iter().flatten() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(Self {
            jsonl,
            masks,
            overlays,
            publisher: None,
        })
    }

    /// JSON Lines to any writer (tests use deliberately slow or failing ones).
    pub fn with_writer(w: Box<dyn Write + Send>) -> Self {
        Self {
            jsonl: Some(("JSON Lines output".into(), w)),
            masks: None,
            overlays: None,
            publisher: None,
        }
    }

    /// Also publishes every frame's record to a broker.
    pub fn publish_to(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Writes one frame's outputs. With `flush` each line is flushed so a reader sees it at once
    /// (live sources).
    pub fn emit(&mut self, out: &FrameOutputs, flush: bool) -> Result<(), SinkError> {
        let FrameOutputs {
            record,
            frame,
            index,
            mask,
            targets,
            truth,
        } = *out;
        if let Some(p) = &self.publisher {
            p.publish(record);
        }
        if let Some((what, w)) = self.jsonl.as_mut() {
            writeln!(w, "{record}").map_err(|e| SinkError::from_io(what, e))?;
            if flush {
                w.flush().map_err(|e| SinkError::from_io(what, e))?;
            }
        }
        if let Some(dir) = &self.masks {
            write_mask_png(
                &dir.join(format!("{index:06}_mask.png")),
                frame.width,
                frame.height,
                mask,
            )
            .map_err(|e| SinkError::Failed(format!("{e:#}")))?;
        }
        if let Some(dir) = &self.overlays {
            write_rgb_png(
                &dir.join(format!("{index:06}_overlay.png")),
                &overlay::detections(frame, targets, truth),
            )
            .map_err(|e| SinkError::Failed(format!("{e:#}")))?;
        }
        Ok(())
    }

    /// Delivers what the publisher still holds (see [`Publisher::finish`]); None without one.
    pub fn finish_publishing(&mut self) -> Option<(PublishCounts, Option<String>)> {
        self.publisher.take().map(Publisher::finish)
    }

    /// Flushes the JSON Lines output.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if let Some((what, w)) = self.jsonl.as_mut() {
            w.flush().map_err(|e| SinkError::from_io(what, e))?;
        }
        Ok(())
    }
}
