//! Regression tests for the defects of the reliability issue, numbered as it numbers them:
//! every bad input or fault gets a clear error (or a normal end) in bounded time, never a
//! panic, an abort, a hang, a silent loss, or a file of the user's destroyed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_srsnet");

fn srsnet(args: &[&str]) -> (i32, String, String) {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run srsnet");
    finish(child, Duration::from_secs(120), &args.join(" "))
}

/// Waits for `child` at most `limit` (killing it and failing the test past that).
fn finish(mut child: Child, limit: Duration, what: &str) -> (i32, String, String) {
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("`srsnet {what}` still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "`srsnet {what}` panicked: {err}");
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("`srsnet {what}` killed by a signal: {err}"));
    (code, String::from_utf8_lossy(&out.stdout).into(), err)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-robust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/srsnet-lite.safetensors")
}

fn gray_png(path: &Path, w: u32, h: u32, v: u8) {
    image::GrayImage::from_pixel(w, h, image::Luma([v])).save(path).unwrap();
}

fn assert_refused(args: &[&str], needle: &str) {
    let (code, _, err) = srsnet(args);
    assert_ne!(code, 0, "`{}` was accepted: {err}", args.join(" "));
    assert!(
        err.contains(needle),
        "`{}`: error should mention `{needle}`: {err}",
        args.join(" ")
    );
}

#[test]
fn d01_bench_never_deletes_the_weights_it_is_given() {
    // The defect needed the file under the temp directory.
    let d = tmp("bench");
    let mine = d.join("mine.safetensors");
    std::fs::copy(shipped(), &mine).unwrap();
    let before = std::fs::read(&mine).unwrap();
    let (code, out, err) = srsnet(&[
        "bench",
        "--weights",
        s(&mine),
        "--iters",
        "1",
        "--warmup",
        "0",
        "--size",
        "32",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over 1 runs"), "{out}");
    assert_eq!(
        std::fs::read(&mine).unwrap(),
        before,
        "the user's weights file is intact"
    );
}

#[test]
fn d02_run_ends_normally_when_the_reader_closes_the_pipe() {
    // `srsnet run ... | head -1` on an endless source.
    let mut child = Command::new(BIN)
        .args(["run", "--model", "tophat", "--count", "0", "--size", "64x64"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(record["frame"], 0, "{first}");
    // The reader is dropped here: the pipe is closed.
    let (code, _, err) = finish(child, Duration::from_secs(30), "run | head -1");
    assert_eq!(code, 0, "a closed pipe is a normal end: {err}");
    assert!(err.contains("closed the output"), "{err}");
}

#[test]
fn d02_run_to_a_full_disk_fails_promptly_naming_the_output() {
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--count",
        "200",
        "--size",
        "64x64",
        "--jsonl",
        "/dev/full",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("/dev/full") && err.contains("No space left"), "{err}");
}

#[test]
fn d02_masks_folder_removed_while_running_ends_the_run() {
    let d = tmp("masks-gone");
    let masks = d.join("masks");
    let child = Command::new(BIN)
        .args([
            "run", "--model", "tophat", "--count", "0", "--fps", "50", "--size", "64x64",
        ])
        .args(["--jsonl", "/dev/null", "--masks", s(&masks)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Moved away in one step: deleting it file by file races with the masks still being
    // written (remove_dir_all then fails with "directory not empty" on a loaded machine).
    std::fs::rename(&masks, d.join("masks-moved")).unwrap();
    let (code, _, err) = finish(child, Duration::from_secs(30), "run --masks (removed)");
    assert_ne!(code, 0);
    assert!(err.contains("output failed") && err.contains("_mask.png"), "{err}");
}

#[test]
fn d03_a_mask_that_cannot_be_written_fails_the_run_and_is_named() {
    // A full disk for one file: the mask path is a link to /dev/full.
    let d = tmp("mask-full");
    std::os::unix::fs::symlink("/dev/full", d.join("000002_mask.png")).unwrap();
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--count",
        "5",
        "--size",
        "64x64",
        "--masks",
        s(&d),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("000002_mask.png") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(
        out.lines().count(),
        3,
        "frames before the failure were written (frame 2's line too)"
    );
    for i in 0..2 {
        assert!(std::fs::metadata(d.join(format!("{i:06}_mask.png"))).unwrap().len() > 0);
    }
}

#[test]
fn d03_infer_reports_an_output_it_could_not_write() {
    let d = tmp("infer-full");
    let (a, b) = (d.join("a.png"), d.join("b.png"));
    gray_png(&a, 32, 24, 40);
    gray_png(&b, 32, 24, 60);
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("a_mask.png")).unwrap();
    let (code, stdout, err) = srsnet(&["infer", "--out", s(&out), s(&a), s(&b)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("a_mask.png") && err.contains("1 of 2 images failed"),
        "{err}"
    );
    assert_eq!(stdout.lines().count(), 1);
    assert!(std::fs::metadata(out.join("b_mask.png")).unwrap().len() > 0);
}

#[test]
fn d04_sizes_and_counts_beyond_the_limits_are_errors_not_aborts() {
    assert_refused(&["run", "--source", "synthetic", "--size", "100000x100000"], "16384");
    assert_refused(&["synth", "--out", "/tmp/never", "--size", "100000x100000"], "16384");
    assert_refused(&["bench", "--size", "100000"], "16384");
    assert_refused(&["run", "--confirm=1/1000000000000"], "1000 frames");
    assert_refused(&["bench", "--iters", "0"], "--iters");
    assert_refused(
        &[
            "train",
            "all",
            "--data",
            "/nowhere",
            "--out",
            "/tmp/never",
            "--batch",
            "0",
        ],
        "--batch",
    );
    assert_refused(&["run", "--targets", "1000000000000"], "--targets");
}

/// A PNG whose header claims `w`×`h`, with a token IDAT: what a decoder sees before it
/// allocates the pixels.
fn png_header_only(path: &Path, w: u32, h: u32) {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let body = [kind, data].concat();
        out.extend_from_slice(&body);
        let mut c = 0xffff_ffffu32;
        for &b in &body {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        out.extend_from_slice(&(!c).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes()[..], &[8, 0, 0, 0, 0]].concat();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).unwrap();
}

#[test]
fn d04_a_huge_image_is_refused_and_the_images_after_it_are_processed() {
    let d = tmp("huge");
    let (huge, good) = (d.join("huge.png"), d.join("good.png"));
    png_header_only(&huge, 16000, 16000);
    gray_png(&good, 40, 32, 90);
    let out = d.join("out");
    let direct = format!("{:#}", srsnet::image_io::read_frame(&huge, 1).unwrap_err());
    assert!(direct.contains("huge.png") && direct.contains("16000"), "{direct}");
    let (code, stdout, err) = srsnet(&["infer", "--out", s(&out), s(&huge), s(&good)]);
    assert_eq!(code, 1);
    assert!(err.contains("huge.png") && err.contains("16000"), "{err}");
    assert_eq!(stdout.lines().count(), 1);
    assert!(out.join("good_mask.png").exists());
}

#[test]
fn d05_looping_over_a_folder_of_unreadable_frames_ends() {
    let d = tmp("loop-bad");
    for i in 0..3 {
        std::fs::write(d.join(format!("f{i}.png")), b"not a png").unwrap();
    }
    let (code, _, err) = srsnet(&["run", "--model", "tophat", "--source", s(&d), "--loop"]);
    assert_ne!(code, 0);
    assert!(err.contains("none of its 3 frames could be read"), "{err}");
}

#[test]
fn d06_infer_refuses_outputs_that_collide_or_replace_an_input() {
    let d = tmp("collide");
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    gray_png(&d.join("a/x.png"), 16, 16, 10);
    gray_png(&d.join("b/x.png"), 16, 16, 200);
    let (a, b) = (d.join("a/x.png"), d.join("b/x.png"));
    assert_refused(&["infer", "--out", s(&d.join("o")), s(&a), s(&b)], "would both write");
    assert!(!d.join("o/x_mask.png").exists(), "nothing was written");
    // An input named like an output in the output folder.
    let x = d.join("x.png");
    let xm = d.join("x_mask.png");
    gray_png(&x, 16, 16, 10);
    gray_png(&xm, 16, 16, 77);
    let before = std::fs::read(&xm).unwrap();
    assert_refused(&["infer", "--out", s(&d), s(&x), s(&xm)], "refusing to overwrite");
    assert_eq!(std::fs::read(&xm).unwrap(), before, "the input is intact");
}

#[test]
fn d07_eval_of_mask_files_counts_every_ground_truth() {
    let d = tmp("eval-masks");
    let (pred, gt) = (d.join("pred"), d.join("gt"));
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    for i in 0..11 {
        let mut m = image::GrayImage::new(16, 16);
        m.put_pixel(5, 5, image::Luma([255]));
        m.save(gt.join(format!("img{i:02}.png"))).unwrap();
        if i < 5 {
            m.save(pred.join(format!("img{i:02}.png"))).unwrap();
        }
    }
    let (code, out, err) = srsnet(&["eval", "--pred", s(&pred), "--gt", s(&gt), "--json"]);
    assert_ne!(code, 0, "6 of 11 ground truths have no prediction: {out}");
    assert_eq!(err.matches("no prediction").count(), 6, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (v["metrics"]["images"].as_u64(), v["failed"].as_u64()),
        (Some(5), Some(6))
    );
}

#[test]
fn d08_nothing_processed_is_a_failure() {
    let d = tmp("all-corrupt");
    for i in 0..2 {
        std::fs::write(d.join(format!("f{i}.png")), b"garbage").unwrap();
    }
    let (code, _, err) = srsnet(&["run", "--model", "tophat", "--source", s(&d)]);
    assert_ne!(code, 0);
    assert!(err.contains("2 frames could not be processed"), "{err}");
    // A raw frame size whose byte count overflows is refused before anything is computed.
    let raw = d.join("rec.y16");
    std::fs::write(&raw, [0u8; 64]).unwrap();
    assert_refused(
        &[
            "run",
            "--model",
            "tophat",
            "--source",
            &format!("raw:{}", s(&raw)),
            "--size",
            "2147549185x4294836226",
        ],
        "--size",
    );
}

#[test]
fn d09_out_of_range_values_are_refused_when_parsed() {
    for (args, needle) in [
        (&["eval", "--data", "/x", "--threshold=-1"][..], "--threshold"),
        (&["eval", "--data", "/x", "--sweep", "0.5,2,nan"][..], "--sweep"),
        (&["run", "--threshold", "nan"][..], "--threshold"),
        (&["run", "--fps", "0"][..], "--fps"),
        (&["run", "--fps=-5"][..], "--fps"),
        (&["run", "--fps", "nan"][..], "--fps"),
        (&["run", "--batch", "0"][..], "--batch"),
        (
            &["run", "--confirm", "2/3", "--confirm-radius=-1"][..],
            "--confirm-radius",
        ),
        (&["run", "--format", "rgb"][..], "--format"),
        (&["run", "--stretch", "gamma"][..], "--stretch"),
        (&["synth", "--out", "/tmp/never", "--bits", "12"][..], "--bits"),
    ] {
        assert_refused(args, needle);
    }
    assert_refused(
        &["run", "--model", "tophat", "--min-area", "10", "--max-area", "5"],
        "--min-area 10 is above",
    );
}

#[test]
fn d09_empty_split_garbage_centroids_and_resume_without_checkpoint() {
    let d = tmp("bad-files");
    let split = d.join("empty.txt");
    std::fs::write(&split, "\n\n").unwrap();
    let data = d.join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    gray_png(&data.join("images/a.png"), 16, 16, 9);
    assert_refused(
        &["eval", "--model", "tophat", "--data", s(&data), "--split", s(&split)],
        "lists no names",
    );
    let seq = d.join("seq");
    std::fs::create_dir_all(seq.join("frames")).unwrap();
    gray_png(&seq.join("frames/0001.png"), 32, 32, 9);
    std::fs::write(seq.join("centroids.csv"), "this is not a csv file\n").unwrap();
    assert_refused(&["eval", "--model", "tophat", "--sequence", s(&seq)], "centroids.csv");
    std::fs::write(seq.join("centroids.csv"), "frame,x,y\n0002.png,3,4\n").unwrap();
    assert_refused(&["eval", "--model", "tophat", "--sequence", s(&seq)], "not in");
    assert_refused(
        &[
            "train",
            "recon",
            "--data",
            s(&data),
            "--out",
            s(&d.join("run")),
            "--resume",
        ],
        "no recon checkpoint",
    );
}

/// Rewrites a copy of the shipped weights with `edit` applied to its tensors and metadata.
fn edited_weights(
    path: &Path,
    edit: impl FnOnce(
        &mut std::collections::BTreeMap<String, candle_core::Tensor>,
        &mut std::collections::HashMap<String, String>,
    ),
) {
    let store = srsnet::model::WeightStore::open(shipped()).unwrap();
    let mut meta = store.metadata();
    let mut tensors = std::collections::BTreeMap::new();
    for n in store.names() {
        let t = store
            .get_any_shape(&n, candle_core::DType::F16, &candle_core::Device::Cpu)
            .unwrap();
        tensors.insert(n, t);
    }
    edit(&mut tensors, &mut meta);
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta), path).unwrap();
}

#[test]
fn d09_corrupt_metadata_nan_weights_and_nan_calibration_are_errors() {
    let d = tmp("corrupt");
    let meta_bad = d.join("meta.safetensors");
    edited_weights(&meta_bad, |_, meta| {
        let mut info: serde_json::Value = serde_json::from_str(&meta["info"]).unwrap();
        info["threshold"] = serde_json::json!("0.9x");
        meta.insert("info".into(), info.to_string());
    });
    assert_refused(&["run", "--weights", s(&meta_bad), "--count", "1"], "threshold");
    let broken_info = d.join("info.safetensors");
    edited_weights(&broken_info, |_, meta| {
        meta.insert("info".into(), "{\"threshold\": 0.9".into());
    });
    assert_refused(&["info", s(&broken_info)], "info");
    let nan = d.join("nan.safetensors");
    edited_weights(&nan, |tensors, _| {
        let name = tensors.keys().find(|n| n.ends_with("weight")).unwrap().clone();
        let t = &tensors[&name];
        let poisoned = (t.to_dtype(candle_core::DType::F32).unwrap() * f64::NAN).unwrap();
        tensors.insert(name, poisoned.to_dtype(candle_core::DType::F16).unwrap());
    });
    assert_refused(&["run", "--weights", s(&nan), "--count", "1"], "NaN");
    let mut profile = srsnet::calibration::Profile::identity(320, 256);
    profile.gain[7] = f32::NAN;
    let cal = d.join("cal.safetensors");
    profile.save(&cal).unwrap();
    assert_refused(
        &["run", "--model", "tophat", "--calibration", s(&cal), "--count", "1"],
        "cal.safetensors",
    );
}

fn send_sigint(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn d10_the_second_ctrl_c_exits_at_once() {
    // The network at 640×512 is slow enough here that the queues hold many seconds of work.
    let child = Command::new(BIN)
        .args(["run", "--count", "0", "--size", "640x512", "--jsonl", "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    send_sigint(&child);
    std::thread::sleep(Duration::from_millis(300));
    send_sigint(&child);
    let t0 = Instant::now();
    let (code, _, err) = finish(child, Duration::from_secs(10), "run (Ctrl-C twice)");
    assert_eq!(code, 130, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert!(err.contains("exiting at once"), "{err}");
}

#[test]
fn d10_the_first_ctrl_c_drains_what_was_captured() {
    let d = tmp("drain");
    let stats = d.join("stats.json");
    let child = Command::new(BIN)
        .args([
            "run", "--model", "tophat", "--count", "0", "--fps", "100", "--size", "64x64",
        ])
        .args(["--jsonl", "/dev/null", "--stats-json", s(&stats)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    send_sigint(&child);
    let (code, _, err) = finish(child, Duration::from_secs(10), "run (Ctrl-C)");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(v["frames"].as_u64().unwrap() > 10, "{v}");
    assert_eq!(v["frames"], v["captured"], "every captured frame was emitted: {v}");
}

#[test]
fn d12_a_synth_sequence_replays_with_its_truth_and_run_agrees_with_eval() {
    let d = tmp("synth-replay");
    let (code, _, err) = srsnet(&[
        "synth",
        "--out",
        s(&d),
        "--count",
        "8",
        "--size",
        "96x80",
        "--targets",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(d.join("frames/synthetic_0000.png").exists() && d.join("centroids.csv").exists());
    let stats = d.join("stats.json");
    let model = "tophat:9:6";
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        model,
        "--source",
        s(&d),
        "--jsonl",
        "-",
        "--stats-json",
        s(&stats),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 8);
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(run["targets"], 16, "the truth rode along with every frame: {run}");
    let (code, out, err) = srsnet(&[
        "eval",
        "--model",
        model,
        "--sequence",
        s(&d),
        "--threshold",
        "0.5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let eval: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let m = &eval["metrics"];
    assert_eq!(
        (&run["hits"], &run["targets"]),
        (&m["hits"], &m["targets"]),
        "{run} vs {eval}"
    );
    assert_eq!(run["fa"], m["fa"]);
    assert_eq!(run["false_targets_per_frame"], m["false_targets_per_frame"]);
    assert!(
        m["hits"].as_u64().unwrap() > 0,
        "the baseline finds some of the synthetic targets: {m}"
    );
}
