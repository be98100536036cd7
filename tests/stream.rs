//! The streaming runtime end to end: sources, calibration, lossless replay, live drop-oldest,
//! and the errors bad input gets.

use srsnet::calibration::{two_point, Profile};
use srsnet::eval::tophat::TopHat;
use srsnet::infer::Segmenter;
use srsnet::stream::frame::{Pixels, RawFrame};
use srsnet::stream::pipeline::{run, PipelineConfig};
use srsnet::stream::preprocess::{Preprocessor, Stretch};
use srsnet::stream::sinks::Sinks;
use srsnet::stream::sources::camera::{
    CameraSource, CaptureDevice, CaptureFormat, Opener, ScriptedDevice, StreamFormat,
};
use srsnet::stream::sources::folder::FolderSource;
use srsnet::stream::sources::raw::{write_raw, RawFormat, RawSource};
use srsnet::stream::sources::synthetic::SyntheticSource;
use srsnet::stream::sources::{FrameSource, SourceError};
use srsnet::stream::stop::Stop;
use srsnet::synthetic::BitDepth;
use srsnet::synthetic::SceneConfig;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-stream-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A JSON Lines writer that keeps what it gets and can be made slow.
#[derive(Clone, Default)]
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    delay: Duration,
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.contains(&b'\n') {
            std::thread::sleep(self.delay);
        }
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn records(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.bytes.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `srsnet synth` into `dir`: `count` 8-bit frames with their truth.
fn write_synth(dir: &std::path::Path, count: usize, (width, height): (usize, usize), targets: usize, seed: u64) {
    let req = srsnet::synthetic::SynthRequest {
        count,
        scene: SceneConfig {
            width,
            height,
            targets,
            seed,
            ..Default::default()
        },
        bits: BitDepth::Eight,
        flat: None,
    };
    srsnet::synthetic::write_sequence(dir, &req).unwrap();
}

/// A top-hat tuned for the synthetic scenes (the SIRST-tuned default is stricter).
fn tophat() -> Segmenter {
    Segmenter::TopHat(TopHat {
        se: 9,
        k: 6.0,
        min_contrast: 0.02,
    })
}

fn go(source: Box<dyn FrameSource>, sink: &Capture, cfg: PipelineConfig) -> srsnet::stream::pipeline::RunReport {
    let pre = Preprocessor::new(None, Stretch::default(), 1);
    run(
        source,
        pre,
        tophat(),
        Sinks::with_writer(Box::new(sink.clone())),
        cfg,
        &Stop::new(),
    )
}

#[test]
fn synthetic_targets_are_reported_where_they_are() {
    let cfg = SceneConfig {
        width: 160,
        height: 128,
        targets: 2,
        seed: 11,
        contrast: 0.3,
        noise: 0.01,
    };
    let sink = Capture::default();
    let report = go(
        Box::new(SyntheticSource::new(cfg, BitDepth::Eight, Some(40), None).unwrap()),
        &sink,
        PipelineConfig::default(),
    );
    let (mut near, mut truths) = (0, 0);
    for rec in sink.records() {
        for t in rec["truth"].as_array().unwrap() {
            truths += 1;
            let (x, y) = (t["x"].as_f64().unwrap(), t["y"].as_f64().unwrap());
            let best = rec["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| ((d["x"].as_f64().unwrap() - x).powi(2) + (d["y"].as_f64().unwrap() - y).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min);
            if best <= 1.5 {
                near += 1;
            }
        }
    }
    assert_eq!(truths, 80);
    assert!(
        near as f64 >= 0.9 * truths as f64,
        "only {near} of {truths} targets reported within 1.5 px"
    );
    assert!(
        report.stats.score.finish().pd >= 0.9,
        "running Pd {}",
        report.stats.score.finish().pd
    );
}

#[test]
fn replay_is_lossless_and_ordered_with_slow_sink() {
    let cfg = SceneConfig {
        width: 64,
        height: 64,
        targets: 1,
        ..Default::default()
    };
    let sink = Capture {
        delay: Duration::from_millis(15),
        ..Default::default()
    };
    let report = go(
        Box::new(SyntheticSource::new(cfg, BitDepth::Sixteen, Some(25), None).unwrap()),
        &sink,
        PipelineConfig {
            queue: 1,
            ..Default::default()
        },
    );
    let frames: Vec<u64> = sink.records().iter().map(|r| r["frame"].as_u64().unwrap()).collect();
    assert_eq!(frames, (0..25).collect::<Vec<_>>());
    assert_eq!((report.stats.frames, report.stats.dropped), (25, 0));
}

#[test]
fn live_source_drops_oldest_and_never_blocks() {
    let fmt = StreamFormat {
        format: CaptureFormat::Grey,
        width: 64,
        height: 64,
        stride: 64,
    };
    let buffers: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 64 * 64]).collect();
    let mut once = Some(buffers);
    let opener: Opener = Box::new(move || {
        let b = once.take().ok_or_else(|| anyhow::anyhow!("gone"))?;
        Ok(Box::new(ScriptedDevice::new(fmt, b, Duration::from_millis(1))) as Box<dyn CaptureDevice>)
    });
    let source = CameraSource::new(opener, false).unwrap();
    let sink = Capture {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    let t0 = Instant::now();
    let report = go(
        Box::new(source),
        &sink,
        PipelineConfig {
            queue: 1,
            ..Default::default()
        },
    );
    let frames: Vec<u64> = sink.records().iter().map(|r| r["frame"].as_u64().unwrap()).collect();
    assert!(
        report.stats.dropped > 0,
        "a slow sink must make a live source drop frames"
    );
    assert_eq!(
        report.stats.frames + report.stats.dropped,
        60,
        "every frame is either emitted or counted as dropped"
    );
    assert!(frames.windows(2).all(|p| p[0] < p[1]), "emitted frames stay in order");
    // The device ended (it was "unplugged" after 60 buffers): reported once everything was flushed.
    assert!(report.source_failure.unwrap().contains("stopped delivering"));
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn raw_y16_round_trip_and_partial_frame() {
    let dir = tmp("raw");
    let frames: Vec<Pixels> = (0..3u16)
        .map(|k| Pixels::U16((0..48u16).map(|i| 1000 * k + i * 7 + 12000).collect()))
        .collect();
    let path = dir.join("rec.y16");
    write_raw(&path, &frames).unwrap();
    // Append half a frame: reported, and the three whole frames still come out.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0u8; 48]).unwrap();
    drop(f);
    let mut src = RawSource::open(&path, 8, 6, RawFormat::Y16, None, false).unwrap();
    for expected in &frames {
        let got = src.next_frame(&Stop::new()).unwrap().unwrap();
        assert_eq!(&got.pixels, expected);
    }
    match src.next_frame(&Stop::new()) {
        Some(Err(SourceError::Frame(msg))) => {
            assert!(msg.contains("48 trailing bytes") && msg.contains("rec.y16"), "{msg}")
        }
        other => panic!("expected a partial-frame report, got {other:?}"),
    }
    assert!(src.next_frame(&Stop::new()).is_none());
}

#[test]
fn raw_with_wrong_size_is_a_clear_error() {
    let dir = tmp("rawsize");
    let path = dir.join("small.y16");
    write_raw(&path, &[Pixels::U16(vec![0; 100])]).unwrap();
    let err = RawSource::open(&path, 640, 512, RawFormat::Y16, None, false)
        .err()
        .expect("too small for one frame")
        .to_string();
    assert!(
        err.contains("small.y16") && err.contains("640×512") && err.contains("--size"),
        "{err}"
    );
}

#[test]
fn unreadable_frame_in_folder_is_reported_and_the_rest_processed() {
    let dir = tmp("folder");
    write_synth(&dir, 3, (64, 64), 1, 3);
    std::fs::write(dir.join("frames/synthetic_0001b.png"), b"not a png").unwrap();
    let mut src = FolderSource::new(&dir, None, false).unwrap();
    let (mut ok, mut errs) = (0, vec![]);
    while let Some(f) = src.next_frame(&Stop::new()) {
        match f {
            Ok(_) => ok += 1,
            Err(e) => errs.push(e.to_string()),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("synthetic_0001b.png"), "{}", errs[0]);
    // Through the pipeline: three records, one source error.
    let sink = Capture::default();
    let report = go(
        Box::new(FolderSource::new(&dir, None, false).unwrap()),
        &sink,
        PipelineConfig::default(),
    );
    assert_eq!((sink.records().len(), report.stats.source_errors), (3, 1));
}

/// A flat scene seen through a sensor with per-pixel gain/offset and dead pixels comes out
/// flat after the two-point profile built from cold and hot flat fields.
#[test]
fn calibration_flattens_fixed_pattern_and_dead_pixels() {
    let (w, h) = (32, 24);
    let n = w * h;
    let gain: Vec<f32> = (0..n).map(|i| 0.8 + 0.4 * ((i * 37 % 101) as f32 / 100.0)).collect();
    let offset: Vec<f32> = (0..n).map(|i| -300.0 + 600.0 * ((i * 53 % 97) as f32 / 96.0)).collect();
    let dead = [5usize, 100, 101, 400];
    let sense = |scene: f32, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                if dead.contains(&i) {
                    7.0
                } else {
                    gain[i] * scene + offset[i] + ((i + k) % 3) as f32 - 1.0
                }
            })
            .collect()
    };
    let cold: Vec<Vec<f32>> = (0..4).map(|k| sense(8000.0, k)).collect();
    let hot: Vec<Vec<f32>> = (0..4).map(|k| sense(12000.0, k)).collect();
    let profile = two_point(w, h, &cold, &hot).unwrap();
    for d in dead {
        assert!(profile.bad[d], "dead pixel {d} not flagged");
    }
    assert!(
        profile.bad.iter().filter(|&&b| b).count() <= dead.len() + 2,
        "too many pixels flagged"
    );
    let mut scene = sense(10000.0, 0);
    profile.apply(w, h, &mut scene).unwrap();
    let mean = scene.iter().sum::<f32>() / n as f32;
    let worst = scene.iter().map(|v| (v - mean).abs()).fold(0f32, f32::max);
    assert!(
        worst < 3.0,
        "corrected frame not flat: worst deviation {worst} around {mean}"
    );
    // The profile survives a save/load round trip.
    let p = tmp("cal").join("cam.safetensors");
    profile.save(&p).unwrap();
    assert_eq!(Profile::load(&p).unwrap(), profile);
}

#[test]
fn calibration_of_the_wrong_size_is_reported_per_frame() {
    let mut pre = Preprocessor::new(Some(Profile::identity(640, 512)), Stretch::default(), 1);
    let raw = RawFrame {
        index: 0,
        timestamp: Duration::ZERO,
        captured_at: Instant::now(),
        width: 320,
        height: 256,
        pixels: Pixels::U8(vec![0; 320 * 256]),
        origin: "t".into(),
        truth: None,
    };
    let err = pre.process(&raw).unwrap_err().to_string();
    assert!(err.contains("640×512") && err.contains("320×256"), "{err}");
}

#[cfg(feature = "camera")]
#[test]
fn missing_camera_device_is_named() {
    let err = srsnet::stream::sources::v4l2::V4lDevice::open(
        std::path::Path::new("/dev/video-does-not-exist"),
        &Default::default(),
    )
    .err()
    .expect("no such device")
    .to_string();
    assert!(
        err.contains("/dev/video-does-not-exist") && err.contains("does not exist"),
        "{err}"
    );
}

/// A JSON Lines writer that fails (or reports a closed pipe) after `ok_lines` lines.
struct FailingWriter {
    ok_lines: usize,
    kind: std::io::ErrorKind,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.ok_lines == 0 {
            return Err(std::io::Error::new(self.kind, "the disk is full (test)"));
        }
        self.ok_lines -= buf.iter().filter(|&&b| b == b'\n').count().min(self.ok_lines);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn endless_synthetic() -> Box<dyn FrameSource> {
    let cfg = SceneConfig {
        width: 64,
        height: 48,
        ..Default::default()
    };
    Box::new(SyntheticSource::new(cfg, BitDepth::Eight, None, None).unwrap())
}

#[test]
fn a_failing_sink_ends_an_endless_run_promptly_with_the_error() {
    for (kind, closed) in [
        (std::io::ErrorKind::Other, false),
        (std::io::ErrorKind::BrokenPipe, true),
    ] {
        let sink = FailingWriter { ok_lines: 3, kind };
        let t0 = Instant::now();
        let report = run(
            endless_synthetic(),
            Preprocessor::new(None, Stretch::default(), 1),
            tophat(),
            Sinks::with_writer(Box::new(sink)),
            PipelineConfig::default(),
            &Stop::new(),
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{kind:?}: took {:?}",
            t0.elapsed()
        );
        assert_eq!(report.output_closed, closed, "{kind:?}");
        match report.sink_failure {
            Some(msg) => assert!(!closed && msg.contains("the disk is full"), "{msg}"),
            None => assert!(closed),
        }
        let s = &report.stats;
        assert_eq!(s.frames, 3, "{kind:?}: frames written before the failure");
        assert_eq!(
            s.captured,
            s.frames + 1 + s.discarded,
            "{kind:?}: every captured frame is written, the failed one, or counted as discarded"
        );
    }
}

#[test]
fn a_stop_while_the_camera_is_reconnecting_ends_the_run() {
    let fmt = StreamFormat {
        format: CaptureFormat::Grey,
        width: 32,
        height: 32,
        stride: 32,
    };
    let mut first = Some((0..5u8).map(|i| vec![i; 32 * 32]).collect::<Vec<_>>());
    let opener: Opener = Box::new(move || match first.take() {
        Some(b) => Ok(Box::new(ScriptedDevice::new(fmt, b, Duration::ZERO)) as Box<dyn CaptureDevice>),
        None => anyhow::bail!("camera unplugged"),
    });
    let source = CameraSource::new(opener, true)
        .unwrap()
        .with_retry_interval(Duration::from_secs(3600));
    let stop = Stop::new();
    let s2 = stop.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        s2.request();
    });
    let sink = Capture::default();
    let t0 = Instant::now();
    let report = run(
        Box::new(source),
        Preprocessor::new(None, Stretch::default(), 1),
        tophat(),
        Sinks::with_writer(Box::new(sink.clone())),
        PipelineConfig::default(),
        &stop,
    );
    stopper.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert_eq!(report.stats.frames + report.stats.dropped, 5);
    assert_eq!(sink.records().len() as u64, report.stats.frames);
    assert!(report.source_failure.is_none(), "a requested stop is not a failure");
}

#[test]
fn a_synthetic_sequence_on_disk_holds_the_frames_the_stream_source_makes() {
    // One quantisation: the files `srsnet synth` writes are the frames `--source synthetic` sends.
    let dir = tmp("quantise");
    write_synth(&dir, 3, (48, 40), 2, 9);
    let cfg = SceneConfig {
        width: 48,
        height: 40,
        targets: 2,
        seed: 9,
        ..Default::default()
    };
    let mut live = SyntheticSource::new(cfg, BitDepth::Eight, Some(3), None).unwrap();
    let mut disk = FolderSource::new(&dir, None, false).unwrap();
    let stop = Stop::new();
    for _ in 0..3 {
        let (a, b) = (
            live.next_frame(&stop).unwrap().unwrap(),
            disk.next_frame(&stop).unwrap().unwrap(),
        );
        assert_eq!(a.pixels, b.pixels);
        let points = |t: Option<srsnet::dataset::Truth>| match t {
            Some(srsnet::dataset::Truth::Points(p)) => p,
            other => panic!("expected points, got {other:?}"),
        };
        let (ta, tb) = (points(a.truth), points(b.truth));
        assert_eq!(ta.len(), tb.len());
        for (p, q) in ta.iter().zip(&tb) {
            assert!((p.0 - q.0).abs() < 1e-3 && (p.1 - q.1).abs() < 1e-3, "{p:?} vs {q:?}");
        }
    }
}

/// A fixed camera: a still scene with a warm static blob (clutter) and a target moving 2 px
/// per frame, as a sequence with the target's centroids.
fn still_scene_with_clutter(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    let mut csv = String::from("frame,x,y\n");
    for i in 0..12u32 {
        let mut img = image::GrayImage::from_fn(96, 64, |x, y| image::Luma([60 + ((x * 7 + y * 3) % 5) as u8]));
        for (cx, cy) in [(20u32, 40u32), (10 + 2 * i, 12 + i)] {
            for dy in 0..2 {
                for dx in 0..2 {
                    img.put_pixel(cx + dx, cy + dy, image::Luma([200]));
                }
            }
        }
        let name = format!("f{i:02}.png");
        img.save(dir.join("frames").join(&name)).unwrap();
        csv.push_str(&format!("{name},{:.1},{:.1}\n", 10.5 + 2.0 * i as f64, 12.5 + i as f64));
    }
    std::fs::write(dir.join("centroids.csv"), csv).unwrap();
}

#[test]
fn static_clutter_rejection_keeps_the_mover_and_drops_the_static_blob() {
    use srsnet::stream::postprocess::StaticClutter;
    let dir = tmp("static");
    still_scene_with_clutter(&dir);
    let run_with = |clutter: Option<StaticClutter>| {
        let sink = Capture::default();
        let report = go(
            Box::new(FolderSource::new(&dir, None, false).unwrap()),
            &sink,
            PipelineConfig {
                static_clutter: clutter,
                ..Default::default()
            },
        );
        (report.stats.score.finish(), report.stats.clutter)
    };
    let (plain, none) = run_with(None);
    let (filtered, rejected) = run_with(Some(StaticClutter::new(3, 2.0, 0.01).unwrap()));
    assert_eq!(none, 0);
    assert_eq!((plain.pd, filtered.pd), (1.0, 1.0), "the mover is kept");
    assert!((plain.false_targets_per_frame - 1.0).abs() < 1e-9, "{plain:?}");
    // The blob is reported in its first 3 frames, then rejected in the other 9.
    assert_eq!(rejected, 9);
    assert!(
        (filtered.false_targets_per_frame - 3.0 / 12.0).abs() < 1e-9,
        "{filtered:?}"
    );
}

/// A panning camera: 96×64 views of a smooth textured world, the view moving 2 px right and 1
/// down each frame (so the scene moves by (−2, −1) in the image), with a warm blob fixed in
/// the world (clutter carried by the pan) and a target moving 3 px right and 1 down per frame
/// in the world (1 px right per frame in the image), as a sequence with the target's centroids.
fn panning_scene_with_clutter(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    let world = |x: u32, y: u32| {
        let (u, v) = (f64::from(x), f64::from(y));
        70.0 + 20.0 * ((u * 0.13).sin() + (v * 0.11).cos() + (0.05 * u + 0.09 * v).sin())
    };
    let mut csv = String::from("frame,x,y\n");
    for i in 0..12u32 {
        let (ox, oy) = (2 * i, i);
        let mut img = image::GrayImage::from_fn(96, 64, |x, y| image::Luma([world(x + ox, y + oy).round() as u8]));
        // The blob at world (50, 45); the target at world (20 + 3i, 12 + i).
        for (wx, wy) in [(50u32, 45u32), (20 + 3 * i, 12 + i)] {
            for dy in 0..2 {
                for dx in 0..2 {
                    img.put_pixel(wx - ox + dx, wy - oy + dy, image::Luma([200]));
                }
            }
        }
        let name = format!("f{i:02}.png");
        img.save(dir.join("frames").join(&name)).unwrap();
        csv.push_str(&format!("{name},{:.1},{:.1}\n", 20.5 + i as f64, 12.5));
    }
    std::fs::write(dir.join("centroids.csv"), csv).unwrap();
}

/// The pipeline with `cfg` over the panning scene, written into the new folder `name`: its
/// report, and the folder.
fn run_on_pan(name: &str, cfg: PipelineConfig) -> (srsnet::stream::pipeline::RunReport, std::path::PathBuf) {
    let dir = tmp(name);
    panning_scene_with_clutter(&dir);
    let source = Box::new(FolderSource::new(&dir, None, false).unwrap());
    (go(source, &Capture::default(), cfg), dir)
}

#[test]
fn registered_static_clutter_follows_a_pan_and_keeps_the_mover() {
    use srsnet::stream::postprocess::StaticClutter;
    let run_with = |clutter: StaticClutter| {
        let cfg = PipelineConfig {
            static_clutter: Some(clutter),
            ..Default::default()
        };
        let (report, _) = run_on_pan("panning", cfg);
        (
            report.stats.score.finish(),
            report.stats.clutter,
            report.stats.still_frames,
        )
    };
    // As a fixed camera: every frame moved, so nothing is still and nothing is rejected.
    let (fixed, rejected, still) = run_with(StaticClutter::new(3, 2.0, 0.01).unwrap());
    assert_eq!((rejected, still), (0, 0));
    assert!((fixed.false_targets_per_frame - 1.0).abs() < 1e-9, "{fixed:?}");
    // Following the pan: the 11 frames after the first are still up to the shift; the blob
    // is reported in its first 3 frames and rejected in the other 9; the target stays.
    let (registered, rejected, still) = run_with(StaticClutter::new(3, 2.0, 0.01).unwrap().following_pans(4).unwrap());
    assert_eq!((rejected, still), (9, 11), "{registered:?}");
    assert_eq!(registered.pd, 1.0, "the mover is kept");
    assert!(
        (registered.false_targets_per_frame - 3.0 / 12.0).abs() < 1e-9,
        "{registered:?}"
    );
}

#[test]
fn the_motion_gate_rejects_the_point_the_pan_carries_and_keeps_the_mover() {
    use srsnet::stream::motion::MotionGate;
    let cfg = PipelineConfig {
        motion_gate: Some(MotionGate::new(3, 0.5, 4).unwrap()),
        ..Default::default()
    };
    let (report, dir) = run_on_pan("panning-gate", cfg);
    let m = report.stats.score.finish();
    // Frames 0–2 have no frame 3 back and keep both detections; from frame 3 on, the blob
    // (where the scene was 3 frames earlier, it was already there) is rejected, the target
    // (9 px of scene away from where it was) is kept: 9 frames × 2 detections judged.
    assert_eq!(
        (report.stats.motion_gated, report.stats.motion_judged),
        (9, 18),
        "{m:?}"
    );
    assert_eq!(m.pd, 1.0, "the mover is kept");
    assert!((m.false_targets_per_frame - 3.0 / 12.0).abs() < 1e-9, "{m:?}");
    let stats = report.stats.to_json();
    assert_eq!(stats["motion_gated"], 9, "{stats}");
    // `eval --sequence DIR --motion-gate 3 --motion-min 0.5 --motion-register 4` scores alike.
    let gate = MotionGate::new(3, 0.5, 4).unwrap();
    let rule = PipelineConfig::default().rule;
    let (rows, failed) = srsnet::cli::eval::sweep_sequence(&tophat(), &dir, &[rule], Some(&gate)).unwrap();
    assert_eq!(failed, 0);
    assert_eq!((rows[0].hits, rows[0].false_targets), (m.hits, m.false_targets));
}

#[test]
fn static_clutter_and_the_motion_gate_share_one_registration_of_the_pan() {
    use srsnet::stream::motion::MotionGate;
    use srsnet::stream::postprocess::StaticClutter;
    // The gate asks for a wider search (8 px) than the static filter follows (4): the stream
    // registers each frame once, as far as the gate asks, for both.
    let cfg = PipelineConfig {
        static_clutter: Some(StaticClutter::new(3, 2.0, 0.01).unwrap().following_pans(4).unwrap()),
        motion_gate: Some(MotionGate::new(3, 0.5, 8).unwrap()),
        ..Default::default()
    };
    let (report, _) = run_on_pan("panning-both", cfg);
    let m = report.stats.score.finish();
    // The static filter counts as alone (the pan is 1 px a frame, within its 4): the blob is
    // rejected in 9 frames and 11 frames are still. The gate then sees only the target from
    // frame 3 on: 9 judged, none rejected.
    assert_eq!((report.stats.clutter, report.stats.still_frames), (9, 11), "{m:?}");
    assert_eq!((report.stats.motion_gated, report.stats.motion_judged), (0, 9), "{m:?}");
    assert_eq!(m.pd, 1.0, "the mover is kept");
    assert!((m.false_targets_per_frame - 3.0 / 12.0).abs() < 1e-9, "{m:?}");
}

/// A labelled set in the SIRST layout (or, with `kbt`, the NUDT-KBT19 layout) made of synthetic
/// frames and their exact masks.
fn labelled_set(dir: &std::path::Path, kbt: bool) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let mut scene = srsnet::synthetic::Scene::new(SceneConfig {
        width: 96,
        height: 80,
        targets: 3,
        seed: 21,
        contrast: 0.3,
        noise: 0.01,
    });
    for i in 0..5 {
        let (img, _, masks) = scene.frame_with_masks(i * 3);
        let px: Vec<u8> = img.iter().map(|v| (v * 255.0).round() as u8).collect();
        let mut m = vec![0u8; 96 * 80];
        masks.iter().flatten().for_each(|&k| m[k] = 255);
        let (image, mask) = if kbt {
            (format!("{i}.bmp"), format!("{i}.bmp"))
        } else {
            (format!("img{i}.png"), format!("img{i}_pixels0.png"))
        };
        image::GrayImage::from_raw(96, 80, px)
            .unwrap()
            .save(dir.join("images").join(image))
            .unwrap();
        image::GrayImage::from_raw(96, 80, m)
            .unwrap()
            .save(dir.join("masks").join(mask))
            .unwrap();
    }
}

#[test]
fn a_labelled_set_replays_with_its_masks_and_scores_as_eval_does() {
    let dir = tmp("labelled");
    labelled_set(&dir, false);
    let sink = Capture::default();
    let report = go(
        Box::new(FolderSource::new(&dir, None, false).unwrap()),
        &sink,
        PipelineConfig::default(),
    );
    let s = &report.stats;
    assert_eq!((s.frames, s.source_errors), (5, 0));
    assert!(s.mask_scored);
    let streamed = s.score.finish();
    let layout = srsnet::dataset::pairs::PairLayout::sirst(&dir);
    let (evaluated, failed) =
        srsnet::cli::eval::eval_model(&tophat(), &layout, None, srsnet::infer::TargetRule::plain(0.5)).unwrap();
    assert_eq!(failed, 0);
    assert_eq!(
        (streamed.iou, streamed.niou, streamed.pd, streamed.fa),
        (evaluated.iou, evaluated.niou, evaluated.pd, evaluated.fa)
    );
    assert!(streamed.iou > 0.2 && streamed.targets == 15, "{streamed:?}");
    let json = s.to_json();
    assert_eq!(json["iou"], streamed.iou);
    // A split restricts the replay.
    let split = dir.join("two.txt");
    std::fs::write(&split, "img1\nimg3\n").unwrap();
    let two = FolderSource::with_split(&dir, Some(&split), None, false).unwrap();
    assert_eq!(two.len(), 2);
    std::fs::write(&split, "img9\n").unwrap();
    let e = FolderSource::with_split(&dir, Some(&split), None, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("img9"), "{e}");
}

#[test]
fn a_kbt_layout_set_whose_masks_do_not_match_is_reported_per_frame() {
    let dir = tmp("kbt");
    labelled_set(&dir, true);
    image::GrayImage::new(50, 50).save(dir.join("masks/2.bmp")).unwrap();
    let sink = Capture::default();
    let report = go(
        Box::new(FolderSource::new(&dir, None, false).unwrap()),
        &sink,
        PipelineConfig::default(),
    );
    assert_eq!((report.stats.frames, report.stats.source_errors), (4, 1));
    assert_eq!(
        report.stats.score.finish().targets,
        12,
        "the other four frames were scored"
    );
    let mut src = FolderSource::new(&dir, None, false).unwrap();
    let stop = Stop::new();
    let errors: Vec<String> = std::iter::from_fn(|| src.next_frame(&stop))
        .filter_map(|f| f.err().map(|e| e.to_string()))
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("2.bmp") && errors[0].contains("50×50") && errors[0].contains("96×80"),
        "{}",
        errors[0]
    );
}
