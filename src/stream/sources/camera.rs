//! Live cameras behind a small device trait: the V4L2 implementation lives in `v4l2.rs`;
//! tests drive the same source with a scripted device. Buffer-to-frame conversion for the
//! pixel formats thermal cameras send (GREY, Y16 little-endian, YUYV luma) is here.

use super::{FrameSource, PixelFormat, SourceError};
use crate::stream::frame::{Pixels, RawFrame};
use crate::stream::stop::Stop;
use std::time::{Duration, Instant};

/// The capture pixel formats we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// 8-bit gray (`GREY`).
    Grey,
    /// 16-bit little-endian gray (`Y16 `), as FLIR Boson and Lepton send.
    Y16,
    /// Packed YUV 4:2:2 (`YUYV`); we keep the luma.
    Yuyv,
}

impl CaptureFormat {
    /// The V4L2 fourcc.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Grey => *b"GREY",
            Self::Y16 => *b"Y16 ",
            Self::Yuyv => *b"YUYV",
        }
    }

    /// The format of a V4L2 fourcc, if we accept it.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        [Self::Grey, Self::Y16, Self::Yuyv]
            .into_iter()
            .find(|f| f.fourcc() == code)
    }

    /// Bytes per pixel in the buffer (YUYV: 2 bytes per pixel on average).
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Grey => 1,
            Self::Y16 | Self::Yuyv => 2,
        }
    }
}

impl From<PixelFormat> for CaptureFormat {
    fn from(f: PixelFormat) -> Self {
        match f {
            PixelFormat::Y8 => Self::Grey,
            PixelFormat::Y16 => Self::Y16,
            PixelFormat::Yuyv => Self::Yuyv,
        }
    }
}

/// The negotiated format of a capture stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    /// Pixel format.
    pub format: CaptureFormat,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes per line in the buffer (may exceed width × bytes per pixel).
    pub stride: usize,
}

/// Converts one capture buffer to pixels; rejects a buffer too short for its format.
pub fn buffer_to_pixels(fmt: &StreamFormat, buf: &[u8]) -> Result<Pixels, String> {
    let (w, h, stride) = (fmt.width, fmt.height, fmt.stride);
    let row_bytes = w * fmt.format.bytes_per_pixel();
    if stride < row_bytes {
        return Err(format!(
            "stride {stride} is smaller than a {w}-pixel {:?} row ({row_bytes} bytes)",
            fmt.format
        ));
    }
    let needed = stride * (h - 1) + row_bytes;
    if buf.len() < needed {
        return Err(format!(
            "buffer of {} bytes is too short for {w}×{h} {:?} (needs {needed})",
            buf.len(),
            fmt.format
        ));
    }
    let rows = (0..h).map(|y| &buf[y * stride..y * stride + row_bytes]);
    Ok(match fmt.format {
        CaptureFormat::Grey => Pixels::U8(rows.flat_map(|r| r.iter().copied()).collect()),
        CaptureFormat::Y16 => Pixels::U16(
            rows.flat_map(|r| r.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        CaptureFormat::Yuyv => Pixels::U8(rows.flat_map(|r| r.iter().step_by(2).copied()).collect()),
    })
}

/// A capture device: hands out buffers until it fails.
pub trait CaptureDevice: Send {
    /// The negotiated format.
    fn format(&self) -> StreamFormat;
    /// The next filled buffer and its timestamp; an error means the device is gone or broken.
    fn next_buffer(&mut self) -> std::io::Result<(Vec<u8>, Duration)>;
    /// The device name, for messages.
    fn name(&self) -> String;
}

/// Opens (or re-opens) a device.
pub type Opener = Box<dyn FnMut() -> anyhow::Result<Box<dyn CaptureDevice>> + Send>;

/// A live camera. When the device fails, the stream ends with a fatal error (everything
/// captured before it is still processed); with `reconnect` it retries opening instead.
pub struct CameraSource {
    device: Option<Box<dyn CaptureDevice>>,
    opener: Opener,
    reconnect: bool,
    retry_every: Duration,
    index: u64,
    name: String,
}

impl CameraSource {
    /// Opens the camera through `opener` (which is called again to reconnect).
    pub fn new(mut opener: Opener, reconnect: bool) -> anyhow::Result<Self> {
        let device = opener()?;
        let name = device.name();
        Ok(Self {
            device: Some(device),
            opener,
            reconnect,
            retry_every: Duration::from_millis(500),
            index: 0,
            name,
        })
    }

    /// How long to wait between reconnection attempts.
    pub fn with_retry_interval(mut self, every: Duration) -> Self {
        self.retry_every = every;
        self
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>> {
        loop {
            if stop.is_requested() {
                return None;
            }
            let Some(dev) = self.device.as_mut() else {
                if !stop.sleep(self.retry_every) {
                    return None;
                }
                match (self.opener)() {
                    Ok(d) => {
                        eprintln!("reconnected to {}", d.name());
                        self.device = Some(d);
                    }
                    Err(e) => eprintln!("reconnect to {} failed: {e:#}", self.name),
                }
                continue;
            };
            match dev.next_buffer() {
                Ok((buf, timestamp)) => {
                    let fmt = dev.format();
                    let index = self.index;
                    self.index += 1;
                    return Some(match buffer_to_pixels(&fmt, &buf) {
                        Ok(pixels) => Ok(RawFrame {
                            index,
                            timestamp,
                            captured_at: Instant::now(),
                            width: fmt.width,
                            height: fmt.height,
                            pixels,
                            origin: format!("{}#{index}", self.name),
                            truth: None,
                        }),
                        Err(e) => Err(SourceError::Frame(format!("{} frame {index}: {e}", self.name))),
                    });
                }
                Err(e) => {
                    self.device = None;
                    if !self.reconnect {
                        return Some(Err(SourceError::Fatal(format!(
                            "camera {} stopped delivering frames: {e} (use --reconnect to keep retrying)",
                            self.name
                        ))));
                    }
                    eprintln!("camera {} failed: {e}; reconnecting", self.name);
                }
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("camera {}", self.name)
    }
}

/// A scripted device for tests and demos: hands out the given buffers, then fails.
pub struct ScriptedDevice {
    /// The format the buffers are in.
    pub format: StreamFormat,
    /// Buffers still to hand out.
    pub buffers: std::collections::VecDeque<Vec<u8>>,
    /// The device name.
    pub name: String,
    /// Delay before each buffer.
    pub delay: Duration,
    sent: u32,
}

impl ScriptedDevice {
    /// A device handing out `buffers`, one every `delay`.
    pub fn new(format: StreamFormat, buffers: Vec<Vec<u8>>, delay: Duration) -> Self {
        Self {
            format,
            buffers: buffers.into(),
            name: "scripted".into(),
            delay,
            sent: 0,
        }
    }
}

impl CaptureDevice for ScriptedDevice {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn next_buffer(&mut self) -> std::io::Result<(Vec<u8>, Duration)> {
        std::thread::sleep(self.delay);
        let b = self
            .buffers
            .pop_front()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "device removed"))?;
        self.sent += 1;
        Ok((b, self.delay * self.sent))
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_with_row_padding() {
        let fmt = StreamFormat {
            format: CaptureFormat::Grey,
            width: 3,
            height: 2,
            stride: 4,
        };
        let buf = [1, 2, 3, 99, 4, 5, 6, 99];
        assert_eq!(
            buffer_to_pixels(&fmt, &buf).unwrap(),
            Pixels::U8(vec![1, 2, 3, 4, 5, 6])
        );
    }

    #[test]
    fn y16_is_little_endian() {
        let fmt = StreamFormat {
            format: CaptureFormat::Y16,
            width: 2,
            height: 1,
            stride: 4,
        };
        assert_eq!(
            buffer_to_pixels(&fmt, &[0x34, 0x12, 0xff, 0x3f]).unwrap(),
            Pixels::U16(vec![0x1234, 0x3fff])
        );
    }

    #[test]
    fn yuyv_keeps_luma() {
        let fmt = StreamFormat {
            format: CaptureFormat::Yuyv,
            width: 2,
            height: 1,
            stride: 4,
        };
        assert_eq!(
            buffer_to_pixels(&fmt, &[10, 128, 20, 128]).unwrap(),
            Pixels::U8(vec![10, 20])
        );
    }

    #[test]
    fn short_buffer_is_an_error() {
        let fmt = StreamFormat {
            format: CaptureFormat::Y16,
            width: 4,
            height: 4,
            stride: 8,
        };
        assert!(buffer_to_pixels(&fmt, &[0; 20]).unwrap_err().contains("too short"));
    }

    #[test]
    fn fourcc_round_trip() {
        for f in [CaptureFormat::Grey, CaptureFormat::Y16, CaptureFormat::Yuyv] {
            assert_eq!(CaptureFormat::from_fourcc(f.fourcc()), Some(f));
        }
    }

    #[test]
    fn a_removed_device_ends_the_stream_with_a_fatal_error() {
        let fmt = StreamFormat {
            format: CaptureFormat::Grey,
            width: 2,
            height: 2,
            stride: 2,
        };
        let mut bufs = Some(vec![vec![1u8; 4], vec![2u8; 4]]);
        let opener: Opener = Box::new(move || {
            let b = bufs.take().ok_or_else(|| anyhow::anyhow!("no such device"))?;
            Ok(Box::new(ScriptedDevice::new(fmt, b, Duration::ZERO)) as Box<dyn CaptureDevice>)
        });
        let mut cam = CameraSource::new(opener, false).unwrap();
        let stop = Stop::new();
        assert!(cam.next_frame(&stop).unwrap().is_ok());
        assert!(cam.next_frame(&stop).unwrap().is_ok());
        match cam.next_frame(&stop) {
            Some(Err(SourceError::Fatal(msg))) => {
                assert!(msg.contains("stopped delivering") && msg.contains("scripted"), "{msg}")
            }
            other => panic!("expected a fatal error, got {other:?}"),
        }
    }

    #[test]
    fn the_reconnect_loop_honours_stop() {
        let fmt = StreamFormat {
            format: CaptureFormat::Grey,
            width: 2,
            height: 2,
            stride: 2,
        };
        let mut first = Some(vec![vec![1u8; 4]]);
        let opener: Opener = Box::new(move || match first.take() {
            Some(b) => Ok(Box::new(ScriptedDevice::new(fmt, b, Duration::ZERO)) as Box<dyn CaptureDevice>),
            None => anyhow::bail!("no such device"),
        });
        let mut cam = CameraSource::new(opener, true)
            .unwrap()
            .with_retry_interval(Duration::from_secs(3600));
        let stop = Stop::new();
        assert!(cam.next_frame(&stop).unwrap().is_ok());
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            s.request();
        });
        let t0 = std::time::Instant::now();
        assert!(cam.next_frame(&stop).is_none(), "stopped while waiting to reconnect");
        assert!(t0.elapsed() < Duration::from_secs(5));
        h.join().unwrap();
    }
}
