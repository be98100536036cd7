//! Where results go: JSON Lines per frame (stdout or a file), optional mask PNGs, optional
//! overlay PNGs (the frame with numbered target boxes). Every write is checked: a failure is a
//! [`SinkError`] that ends the run, and a closed reader (a broken pipe, as with `| head`) is a
//! normal end of the run, not an error. Records can also go to an MQTT broker (`publish`), which
//! never fails a frame: what it could not deliver is counted and reported at the end.

use super::publish::{PublishCounts, Publisher};
use crate::detect::Target;
use crate::image_io::{write_mask_png, write_rgb_png, Frame};
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
    pub fn emit(
        &mut self,
        record: &serde_json::Value,
        frame: &Frame,
        index: u64,
        mask: &[bool],
        targets: &[Target],
        flush: bool,
    ) -> Result<(), SinkError> {
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
            write_rgb_png(&dir.join(format!("{index:06}_overlay.png")), &overlay(frame, targets))
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

/// 3×5 bitmaps of the digits 0–9, one row per 3 bits.
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// The frame in gray with a red box around each target (2 px margin) and its id above it.
pub fn overlay(frame: &Frame, targets: &[Target]) -> image::RgbImage {
    let (w, h) = (frame.width, frame.height);
    let mut img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (frame.plane(0)[y as usize * w + x as usize] * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8;
        image::Rgb([v, v, v])
    });
    let mut put = |x: isize, y: isize, c: [u8; 3]| {
        if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
            img.put_pixel(x as u32, y as u32, image::Rgb(c));
        }
    };
    let red = [255, 40, 40];
    for t in targets {
        let [x0, y0, x1, y1] = t.bbox.map(|v| v as isize);
        let (x0, y0, x1, y1) = (x0 - 2, y0 - 2, x1 + 2, y1 + 2);
        for x in x0..=x1 {
            put(x, y0, red);
            put(x, y1, red);
        }
        for y in y0..=y1 {
            put(x0, y, red);
            put(x1, y, red);
        }
        let label = t.id.to_string();
        for (k, ch) in label.bytes().enumerate() {
            let glyph = DIGITS[(ch - b'0') as usize];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        put(x0 + (k * 4 + col) as isize, y0 - 7 + row as isize, [255, 255, 0]);
                    }
                }
            }
        }
    }
    img
}
