//! `--source gst:PIPELINE` with Debian's GStreamer (`.ci/run` installs it and runs these with
//! `--features gstreamer`): test patterns in GRAY8 and GRAY16_LE, a lossless video file written
//! here from a synthetic sequence whose targets are known, and the errors bad pipelines get.
//! RTSP: a local gst-rtsp-server (Debian's library, driven from Python through
//! `gir1.2-gst-rtsp-server-1.0` and `python3-gi`) serves a live test pattern on a loopback port.
#![cfg(feature = "gstreamer")]

use srsnet::image_io::Pixels;
use srsnet::stream::sources::gst::GstSource;
use srsnet::stream::sources::FrameSource;
use srsnet::stream::stop::Stop;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-gst-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn srsnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_srsnet")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn records(jsonl: &str) -> Vec<serde_json::Value> {
    jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_gray8_test_pattern_replays_every_frame_with_its_timestamps() {
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        "gst:videotestsrc num-buffers=12 pattern=snow ! video/x-raw,width=72,height=48,framerate=25/1",
    ]);
    assert_eq!(code, 0, "{err}");
    let r = records(&out);
    assert_eq!(r.len(), 12, "every buffer, then end-of-stream ends the run");
    assert!(r.iter().all(|f| f["width"] == 72 && f["height"] == 48));
    // The pipeline clock's presentation timestamps ride along: 25 fps.
    let t: Vec<f64> = r.iter().map(|f| f["timestamp_s"].as_f64().unwrap()).collect();
    for (i, ti) in t.iter().enumerate() {
        assert!((ti - i as f64 / 25.0).abs() < 1e-6, "frame {i}: {ti}");
    }
    assert!(err.contains("(replay)"), "a test source is not live: {err}");
}

#[test]
fn gray16_stays_sixteen_bit() {
    let mut src = GstSource::open(
        "videotestsrc num-buffers=3 pattern=gradient ! video/x-raw,format=GRAY16_LE,width=50,height=30",
    )
    .unwrap();
    let stop = Stop::new();
    let mut n = 0;
    while let Some(f) = src.next_frame(&stop) {
        let f = f.unwrap();
        assert_eq!((f.width, f.height), (50, 30), "rows without the stride padding");
        match f.pixels {
            Pixels::U16(p) => {
                assert_eq!(p.len(), 50 * 30);
                assert!(p.iter().any(|&v| v > 255 && v < 65280), "16-bit values");
            }
            Pixels::U8(_) => panic!("GRAY16_LE delivered as 8-bit"),
        }
        n += 1;
    }
    assert_eq!(n, 3);
    // An odd width in GRAY8: rows are padded to 4 bytes in GStreamer's buffers.
    let mut src =
        GstSource::open("videotestsrc num-buffers=1 pattern=gradient ! video/x-raw,format=GRAY8,width=37,height=9")
            .unwrap();
    let f = src.next_frame(&stop).unwrap().unwrap();
    let Pixels::U8(p) = f.pixels else { panic!("8-bit") };
    assert_eq!(p.len(), 37 * 9);
    // The gradient pattern runs down the rows: each row is one value, so padding would show.
    for row in p.chunks(37) {
        assert!(row.iter().all(|&v| v == row[0]), "{row:?}");
    }
}

/// Encodes the `count` PNG frames of a `srsnet synth` sequence into a lossless Matroska file
/// (raw GRAY8).
fn encode(frames: &Path, count: usize, out: &Path) {
    // `timeout`: a pipeline that fails to preroll can leave gst-launch waiting.
    let status = Command::new("timeout")
        .args(["60", "gst-launch-1.0", "-q"])
        .arg("multifilesrc")
        .arg(format!("location={}/synthetic_%04d.png", frames.display()))
        .arg(format!("stop-index={}", count - 1))
        .args([
            "index=0",
            "caps=image/png,framerate=10/1",
            "!",
            "pngdec",
            "!",
            "videoconvert",
            "!",
        ])
        .args(["video/x-raw,format=GRAY8", "!", "matroskamux", "!", "filesink"])
        .arg(format!("location={}", out.display()))
        .status()
        .expect("gst-launch-1.0 (gstreamer1.0-tools)");
    assert!(status.success());
}

/// A `srsnet synth` sequence of `count` frames of `size` in `dir/seq`, and its Matroska file.
fn synthetic_video(dir: &Path, count: usize, size: &str) -> (PathBuf, PathBuf) {
    let seq = dir.join("seq");
    let n = count.to_string();
    let (code, _, err) = srsnet(&["synth", "--out", seq.to_str().unwrap(), "--count", &n, "--size", size]);
    assert_eq!(code, 0, "{err}");
    let video = dir.join("seq.mkv");
    encode(&seq.join("frames"), count, &video);
    (seq, video)
}

#[test]
fn a_lossless_video_file_gives_the_same_detections_as_its_frames() {
    let d = tmp("video");
    let (seq, video) = synthetic_video(&d, 8, "96x64");
    let pipeline = format!("gst:filesrc location={} ! decodebin", video.display());
    let (code, out, err) = srsnet(&["run", "--source", &pipeline]);
    assert_eq!(code, 0, "{err}");
    let from_video = records(&out);
    let folder_stats = d.join("stats.json");
    let (code, out, err) = srsnet(&[
        "run",
        "--source",
        seq.to_str().unwrap(),
        "--stats-json",
        folder_stats.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let from_frames = records(&out);
    assert_eq!(from_video.len(), 8, "every frame of the file");
    for (v, f) in from_video.iter().zip(&from_frames) {
        assert_eq!(
            v["targets"], f["targets"],
            "frame {}: lossless, so the same detections",
            v["frame"]
        );
    }
    // And those detections are of the sequence's known targets. (How many of them the shipped
    // weights find beside stuck pixels is tested on eleven sequences in tests/cli.rs.)
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&folder_stats).unwrap()).unwrap();
    assert!(stats["hits"].as_u64().unwrap() >= 8, "{stats}");
}

#[test]
fn bad_pipelines_name_the_element_and_the_reason() {
    for (pipeline, expected) in [
        ("gst:nosuchelement", "nosuchelement"),
        ("gst:audiotestsrc num-buffers=4", "audiotestsrc"),
        (
            "gst:filesrc location=/nonexistent/x.mkv ! decodebin",
            "/nonexistent/x.mkv",
        ),
        ("gst:videotestsrc ! video/x-raw,width=banana", "does not parse"),
    ] {
        let (code, _, err) = srsnet(&["run", "--model", "tophat", "--source", pipeline]);
        assert_ne!(code, 0, "{pipeline}");
        assert!(err.contains(expected) && err.contains("gst:"), "{pipeline}: {err}");
    }
}

#[test]
fn an_error_mid_stream_ends_the_run_after_the_frames_before_it() {
    // identity fails on its 5th buffer: the 4 frames before it are processed, then the run
    // ends with GStreamer's error, naming the element.
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        "gst:videotestsrc num-buffers=20 ! video/x-raw,width=64,height=48 ! identity name=flaky error-after=5",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("element `flaky`") && err.contains("Failed after iterations"),
        "{err}"
    );
    assert_eq!(records(&out).len(), 4);
}

#[test]
fn a_truncated_file_ends_early_with_the_frames_it_holds() {
    // Matroska's demuxer treats a cut file as an early end of stream, not an error.
    let d = tmp("truncated");
    let (_, video) = synthetic_video(&d, 8, "64x48");
    let bytes = std::fs::read(&video).unwrap();
    let cut = d.join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let pipeline = format!("gst:filesrc location={} ! matroskademux ! videoconvert", cut.display());
    let (code, out, err) = srsnet(&["run", "--model", "tophat", "--source", &pipeline]);
    assert_eq!(code, 0, "{err}");
    let n = records(&out).len();
    assert!((1..8).contains(&n), "the frames before the cut: {n}");
}

#[test]
fn a_live_pipeline_is_live() {
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        "gst:videotestsrc is-live=true num-buffers=15 ! video/x-raw,width=64,height=48,framerate=30/1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(live)"), "{err}");
    // Live frames are never waited for: what the runtime could not take in time is dropped
    // and counted, and everything else arrives in order.
    let frames: Vec<u64> = records(&out).iter().map(|r| r["frame"].as_u64().unwrap()).collect();
    assert!(
        !frames.is_empty() && frames.windows(2).all(|w| w[0] < w[1]),
        "{frames:?}"
    );
}

/// Serves a live 64×48 test pattern at rtsp://127.0.0.1:PORT/test (raw video over RTP).
const RTSP_SERVER: &str = r#"
import sys, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib
Gst.init(None)
server = GstRtspServer.RTSPServer(); server.set_address("127.0.0.1"); server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=64,height=48,framerate=20/1 ! rtpvrawpay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
"#;

#[test]
fn an_rtsp_camera_is_a_live_source() {
    use std::io::BufRead;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Debian's Python, where python3-gi is installed (not a virtual environment's).
    let mut server = Command::new("/usr/bin/python3")
        .args(["-c", RTSP_SERVER, &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0");
    let mut ready = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the RTSP test server did not start");
    let source = format!("gst:rtspsrc location=rtsp://127.0.0.1:{port}/test latency=0 ! rtpvrawdepay");
    let (code, out, err) = srsnet(&["run", "--model", "tophat", "--count", "10", "--source", &source]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(live)"), "{err}");
    let r = records(&out);
    assert_eq!(r.len(), 10);
    assert!(r.iter().all(|f| f["width"] == 64 && f["height"] == 48));
}
