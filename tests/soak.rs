//! A soak run of the streaming pipeline (its own test binary, so that no other test's memory
//! moves the resident set): a fake live camera with jittered frame timing that disappears
//! half-way and comes back, 10 000 frames, every frame accounted for, memory flat.

use rand::{Rng, SeedableRng};
use srsnet::eval::tophat::TopHat;
use srsnet::infer::Segmenter;
use srsnet::stream::pipeline::{run, PipelineConfig};
use srsnet::stream::preprocess::{Preprocessor, Stretch};
use srsnet::stream::sinks::Sinks;
use srsnet::stream::sources::camera::{CameraSource, CaptureDevice, CaptureFormat, Opener, StreamFormat};
use srsnet::stream::stop::Stop;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FRAMES: u64 = 10_000;
const VANISH_AT: u64 = 5_000;

/// Hands out 32×32 frames with 0–400 µs of jitter; the first one opened fails at `VANISH_AT`
/// (unplugged); the stop is requested after the last frame.
struct JitterCamera {
    sent: Arc<AtomicU64>,
    rng: rand_chacha::ChaCha8Rng,
    stop: Stop,
    fail_at: Option<u64>,
}

impl CaptureDevice for JitterCamera {
    fn format(&self) -> StreamFormat {
        StreamFormat {
            format: CaptureFormat::Grey,
            width: 32,
            height: 32,
            stride: 32,
        }
    }

    fn next_buffer(&mut self) -> std::io::Result<(Vec<u8>, Duration)> {
        std::thread::sleep(Duration::from_micros(self.rng.gen_range(0..400)));
        let n = self.sent.load(Ordering::SeqCst);
        if Some(n) == self.fail_at || n >= FRAMES {
            return Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "unplugged"));
        }
        self.sent.fetch_add(1, Ordering::SeqCst);
        if n + 1 == FRAMES {
            self.stop.request();
        }
        let mut buf = vec![60u8; 32 * 32];
        buf[(n as usize * 7) % 1024] = 250;
        Ok((buf, Duration::from_micros(n * 1000)))
    }

    fn name(&self) -> String {
        "jitter-camera".into()
    }
}

/// Counts lines and samples the resident set size at line 1000 and at every 1000th line after.
#[derive(Clone, Default)]
struct Meter {
    lines: Arc<AtomicU64>,
    rss_at_1000: Arc<Mutex<Option<u64>>>,
    rss_latest: Arc<Mutex<Option<u64>>>,
}

impl Write for Meter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let before = self.lines.fetch_add(n, Ordering::SeqCst);
        if before < 1000 && before + n >= 1000 {
            *self.rss_at_1000.lock().unwrap() = rss_bytes();
        }
        if before / 1000 != (before + n) / 1000 {
            *self.rss_latest.lock().unwrap() = rss_bytes();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[test]
fn ten_thousand_live_frames_with_a_disappearance_are_all_accounted_for() {
    let stop = Stop::new();
    let sent = Arc::new(AtomicU64::new(0));
    let mut opened = 0u64;
    let (s2, st2) = (sent.clone(), stop.clone());
    let opener: Opener = Box::new(move || {
        let camera = JitterCamera {
            sent: s2.clone(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(opened),
            stop: st2.clone(),
            fail_at: (opened == 0).then_some(VANISH_AT),
        };
        opened += 1;
        Ok(Box::new(camera) as Box<dyn CaptureDevice>)
    });
    let source = CameraSource::new(opener, true)
        .unwrap()
        .with_retry_interval(Duration::from_millis(5));
    let meter = Meter::default();
    let seg = Segmenter::TopHat(TopHat {
        se: 5,
        k: 6.0,
        min_contrast: 0.02,
    });
    let report = run(
        Box::new(source),
        Preprocessor::new(None, Stretch::default(), 1),
        seg,
        Sinks::with_writer(Box::new(meter.clone())),
        PipelineConfig::default(),
        &stop,
    );
    let s = &report.stats;
    eprintln!("{}", s.summary());
    assert_eq!(s.captured, FRAMES, "the camera's frames, across the disappearance");
    assert_eq!(s.source_errors + s.frame_errors + s.discarded, 0);
    assert_eq!(s.captured, s.frames + s.dropped, "frames in = frames out + dropped");
    assert_eq!(meter.lines.load(Ordering::SeqCst), s.frames);
    assert!(report.source_failure.is_none() && report.sink_failure.is_none());
    // Measured while the pipeline runs (at the last 1000th line), not after its threads ended.
    let (early, late) = (*meter.rss_at_1000.lock().unwrap(), *meter.rss_latest.lock().unwrap());
    if let (Some(early), Some(late)) = (early, late) {
        eprintln!(
            "RSS at frame 1000: {:.2} MB, at frame {}: {:.2} MB",
            early as f64 / 1e6,
            s.frames / 1000 * 1000,
            late as f64 / 1e6
        );
        assert!(
            late as f64 <= early as f64 * 1.10,
            "memory grew: {early} → {late} bytes"
        );
    }
}
