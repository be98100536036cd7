//! GStreamer pipelines as sources (`--source gst:'PIPELINE'`): CSI cameras
//! (`nvarguscamerasrc`), RTSP thermal cameras, GigE Vision (`aravissrc`), recorded video files.
//!
//! The user writes the pipeline up to a video stream; we append
//! `! videoconvert ! video/x-raw,format={GRAY8,GRAY16_LE} ! appsink`, so any video that
//! videoconvert can turn into gray works, 16-bit data stays 16-bit, and a stream that is not
//! video fails negotiation with an error naming the element.
//!
//! Live pipelines (a source that produces no preroll: cameras, RTSP) are live for the
//! runtime: the appsink keeps at most a few frames and drops the oldest, so capture never
//! blocks. Everything else (files) is a lossless replay, as fast as the pipeline reads, with
//! the appsink applying back-pressure. Each frame carries the buffer's presentation timestamp.
//! End-of-stream ends the run; an error message on the bus ends it after the frames already
//! delivered, naming the element and GStreamer's reason.

use super::{FrameSource, SourceError};
use crate::image_io::Pixels;
use crate::stream::frame::RawFrame;
use crate::stream::stop::Stop;
use anyhow::{anyhow, bail, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use gstreamer_video::prelude::*;
use gstreamer_video::{VideoFormat, VideoFrameRef, VideoInfo};
use std::time::{Duration, Instant};

/// The appsink's name inside the pipeline.
const SINK: &str = "srsnet_sink";
/// How long reaching PLAYING may take (an RTSP camera may need a few seconds).
const START_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(20);
/// How often a waiting capture looks at the stop signal and the bus.
const POLL: gst::ClockTime = gst::ClockTime::from_mseconds(100);

/// A running GStreamer pipeline ending in our appsink.
pub struct GstSource {
    pipeline: gst::Pipeline,
    sink: AppSink,
    live: bool,
    description: String,
    next: u64,
    ended: bool,
}

impl GstSource {
    /// Builds `user ! videoconvert ! gray caps ! appsink` and brings it to PLAYING.
    pub fn open(user: &str) -> Result<Self> {
        gst::init().context("initialising GStreamer")?;
        let description = format!("gst:{user}");
        let full =
            format!("{user} ! videoconvert ! video/x-raw,format=(string){{GRAY8,GRAY16_LE}} ! appsink name={SINK}");
        let element = gst::parse::launch(&full)
            .map_err(|e| anyhow!("{description}: the pipeline does not parse: {}", e.message()))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("{description}: expected a pipeline of linked elements"))?;
        let sink = pipeline
            .by_name(SINK)
            .and_then(|e| e.downcast::<AppSink>().ok())
            .ok_or_else(|| anyhow!("{description}: the appsink is missing (is `{SINK}` used in the pipeline?)"))?;
        let live = start(&pipeline, &description)?;
        if live {
            // Never block a live source: keep the newest few frames.
            sink.set_max_buffers(4);
            sink.set_drop(true);
        } else {
            // Lossless replay, as fast as the pipeline decodes.
            sink.set_max_buffers(8);
            sink.set_drop(false);
            sink.set_property("sync", false);
        }
        Ok(Self {
            pipeline,
            sink,
            live,
            description,
            next: 0,
            ended: false,
        })
    }

    /// The first error on the bus, as "element: reason (debug)".
    fn bus_error(&self) -> Option<String> {
        bus_error(&self.pipeline, gst::ClockTime::ZERO)
    }

    fn frame(&mut self, sample: &gst::Sample) -> Result<RawFrame, SourceError> {
        let bad = |what: String| SourceError::Frame(format!("{}: frame {}: {what}", self.description, self.next));
        let caps = sample.caps().ok_or_else(|| bad("a sample without caps".into()))?;
        let info = VideoInfo::from_caps(caps).map_err(|e| bad(format!("caps {caps}: {e}")))?;
        let buffer = sample.buffer().ok_or_else(|| bad("a sample without a buffer".into()))?;
        let video = VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|e| bad(format!("mapping: {e}")))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = video.plane_stride()[0] as usize;
        let data = video.plane_data(0).map_err(|e| bad(format!("plane: {e}")))?;
        let pixels = match info.format() {
            VideoFormat::Gray8 => Pixels::U8(rows(data, stride, w, h, 1).collect()),
            VideoFormat::Gray16Le => Pixels::U16(
                rows(data, stride, w, h, 2)
                    .collect::<Vec<u8>>()
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            other => return Err(bad(format!("format {other:?}, expected GRAY8 or GRAY16_LE"))),
        };
        let index = self.next;
        self.next += 1;
        Ok(RawFrame {
            index,
            timestamp: buffer
                .pts()
                .map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds())),
            captured_at: Instant::now(),
            width: w,
            height: h,
            pixels,
            origin: format!("{} frame {index}", self.description),
            truth: None,
        })
    }
}

/// The bytes of `h` rows of `w` pixels of `bpp` bytes, skipping each row's padding.
fn rows(data: &[u8], stride: usize, w: usize, h: usize, bpp: usize) -> impl Iterator<Item = u8> + '_ {
    (0..h).flat_map(move |y| data[y * stride..y * stride + w * bpp].iter().copied())
}

/// Brings the pipeline to PLAYING; returns whether it is live. An error names the element.
fn start(pipeline: &gst::Pipeline, description: &str) -> Result<bool> {
    let fail = |pipeline: &gst::Pipeline| {
        let why = bus_error(pipeline, gst::ClockTime::from_seconds(1)).unwrap_or_else(|| "no reason given".into());
        let _ = pipeline.set_state(gst::State::Null);
        anyhow!("{description}: the pipeline did not start: {why}")
    };
    // PAUSED first: a live source (a camera) cannot preroll and says so there.
    let live = match pipeline.set_state(gst::State::Paused) {
        Ok(gst::StateChangeSuccess::NoPreroll) => true,
        Ok(_) => false,
        Err(_) => return Err(fail(pipeline)),
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        return Err(fail(pipeline));
    }
    let (result, state, _) = pipeline.state(START_TIMEOUT);
    if result.is_err() {
        return Err(fail(pipeline));
    }
    if state != gst::State::Playing {
        // Reaching PLAYING timed out; a pipeline that is merely slow to preroll is an error
        // the user should see rather than a silent wait.
        if let Some(why) = bus_error(pipeline, gst::ClockTime::ZERO) {
            let _ = pipeline.set_state(gst::State::Null);
            bail!("{description}: the pipeline did not start: {why}");
        }
        let _ = pipeline.set_state(gst::State::Null);
        bail!("{description}: the pipeline did not reach PLAYING within {START_TIMEOUT}");
    }
    Ok(live)
}

/// The first error message on the bus within `wait`: "element: reason (debug)". Other messages
/// are discarded. (Not `timed_pop_filtered`: with a zero wait it gives up after the first
/// message whatever its type, so an error behind a state change would go unseen.)
fn bus_error(pipeline: &gst::Pipeline, wait: gst::ClockTime) -> Option<String> {
    let bus = pipeline.bus()?;
    let deadline = Instant::now() + Duration::from_nanos(wait.nseconds());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))?;
        if let gst::MessageView::Error(err) = msg.view() {
            let element = msg
                .src()
                .map_or_else(|| "pipeline".to_string(), |s| s.name().to_string());
            let debug = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
            return Some(format!("element `{element}`: {}{debug}", err.error()));
        }
    }
}

impl FrameSource for GstSource {
    fn next_frame(&mut self, stop: &Stop) -> Option<Result<RawFrame, SourceError>> {
        while !self.ended && !stop.is_requested() {
            if let Some(sample) = self.sink.try_pull_sample(POLL) {
                return Some(self.frame(&sample));
            }
            if let Some(why) = self.bus_error() {
                self.ended = true;
                return Some(Err(SourceError::Fatal(format!("{}: {why}", self.description))));
            }
            if self.sink.is_eos() {
                self.ended = true;
            }
        }
        None
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.description, if self.live { "live" } else { "replay" })
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
