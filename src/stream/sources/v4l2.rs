//! The V4L2 capture device (`--source v4l:/dev/videoN`): format negotiation with an error that
//! lists what the device offers, and memory-mapped streaming.

use super::camera::{CaptureDevice, CaptureFormat, StreamFormat};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::FourCC;

/// What the user asks of the camera; unset fields keep the device's current setting.
#[derive(Debug, Clone, Default)]
pub struct CameraRequest {
    /// Pixel format.
    pub format: Option<CaptureFormat>,
    /// Frame columns.
    pub width: Option<usize>,
    /// Frame rows.
    pub height: Option<usize>,
    /// Frame rate.
    pub fps: Option<u32>,
}

/// An opened, streaming V4L2 capture device.
pub struct V4lDevice {
    // The stream borrows nothing from the device in v4l 0.14 (it holds the handle), but it
    // must be dropped before the device: field order does that.
    stream: MmapStream<'static>,
    _device: Device,
    format: StreamFormat,
    name: String,
}

fn offered(dev: &Device) -> String {
    let mut out = Vec::new();
    if let Ok(formats) = dev.enum_formats() {
        for f in formats {
            let sizes = dev
                .enum_framesizes(f.fourcc)
                .map(|s| {
                    s.into_iter()
                        .flat_map(|fs| fs.size.to_discrete())
                        .map(|d| format!("{}x{}", d.width, d.height))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push(format!("{} [{}]", f.fourcc, sizes));
        }
    }
    if out.is_empty() {
        "nothing (format enumeration failed)".into()
    } else {
        out.join("; ")
    }
}

impl V4lDevice {
    /// Opens `path`, negotiates the requested format (an error lists what the device offers)
    /// and starts memory-mapped streaming.
    pub fn open(path: &Path, req: &CameraRequest) -> Result<Self> {
        if !path.exists() {
            bail!("camera device {} does not exist", path.display());
        }
        let dev = Device::with_path(path).with_context(|| format!("cannot open camera device {}", path.display()))?;
        let name = path.display().to_string();
        let mut fmt = dev
            .format()
            .with_context(|| format!("{name}: cannot read the current format"))?;
        if let Some(f) = req.format {
            fmt.fourcc = FourCC::new(&f.fourcc());
        }
        if let Some(w) = req.width {
            fmt.width = w as u32;
        }
        if let Some(h) = req.height {
            fmt.height = h as u32;
        }
        let got = dev
            .set_format(&fmt)
            .with_context(|| format!("{name}: the device refused the format"))?;
        let capture = CaptureFormat::from_fourcc(got.fourcc.repr);
        let size_ok =
            req.width.is_none_or(|w| w == got.width as usize) && req.height.is_none_or(|h| h == got.height as usize);
        let format_ok = req.format.is_none_or(|f| Some(f) == capture);
        let Some(capture) = capture.filter(|_| size_ok && format_ok) else {
            bail!(
                "{name}: asked for {:?} {}x{}, the device gave {} {}x{}; it offers: {}",
                req.format,
                req.width.map(|w| w.to_string()).unwrap_or("*".into()),
                req.height.map(|h| h.to_string()).unwrap_or("*".into()),
                got.fourcc,
                got.width,
                got.height,
                offered(&dev)
            );
        };
        if let Some(fps) = req.fps {
            let params = v4l::video::capture::Parameters::with_fps(fps);
            dev.set_params(&params)
                .with_context(|| format!("{name}: cannot set {fps} fps"))?;
        }
        let stream = MmapStream::with_buffers(&dev, Type::VideoCapture, 4)
            .with_context(|| format!("{name}: cannot start memory-mapped streaming"))?;
        let format = StreamFormat {
            format: capture,
            width: got.width as usize,
            height: got.height as usize,
            stride: got.stride as usize,
        };
        Ok(Self {
            stream,
            _device: dev,
            format,
            name,
        })
    }
}

impl CaptureDevice for V4lDevice {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn next_buffer(&mut self) -> std::io::Result<(Vec<u8>, Duration)> {
        let (buf, meta) = self.stream.next()?;
        let used = (meta.bytesused as usize).min(buf.len());
        let ts = Duration::from_secs(meta.timestamp.sec.max(0) as u64)
            + Duration::from_micros(meta.timestamp.usec.max(0) as u64);
        // Copy out so the driver gets its buffer back at once; frames are small (≤ 2.6 MB).
        Ok((buf[..if used == 0 { buf.len() } else { used }].to_vec(), ts))
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}
