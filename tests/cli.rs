//! The `srsnet` binary's handling of bad input: clear errors naming the file, device or size,
//! and the good inputs still processed.

use std::path::PathBuf;
use std::process::Command;

fn srsnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_srsnet"))
        .args(args)
        .output()
        .expect("run srsnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A headerless Y16 recording of three 64×48 frames with every byte `fill`, as `raw:PATH`.
fn raw_recording(path: &std::path::Path, fill: u8) -> String {
    std::fs::write(path, vec![fill; 2 * 64 * 48 * 3]).unwrap();
    format!("raw:{}", path.display())
}

/// Writes a `srsnet synth` sequence to `out` with these further arguments.
fn synth(out: &std::path::Path, args: &[&str]) {
    let mut argv = vec!["synth", "--out", out.to_str().unwrap()];
    argv.extend_from_slice(args);
    let (code, _, err) = srsnet(&argv);
    assert_eq!(code, 0, "{err}");
}

/// The first frame (by name) of a sequence folder's `frames/`.
fn first_frame(seq: &std::path::Path) -> PathBuf {
    let frames = seq.join("frames").read_dir().unwrap();
    frames.map(|e| e.unwrap().path()).min().unwrap()
}

/// The JSON file a command wrote (`--stats-json`, `infer`'s records).
fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn run_with_a_device_that_does_not_exist() {
    let (code, _, err) = srsnet(&["run", "--model", "tophat", "--source", "v4l:/dev/video-missing-42"]);
    assert_ne!(code, 0);
    assert!(err.contains("/dev/video-missing-42"), "{err}");
}

#[test]
fn run_raw_with_wrong_size() {
    let d = tmp("raw");
    let src = raw_recording(&d.join("rec.y16"), 0);
    let (code, _, err) = srsnet(&["run", "--model", "tophat", "--source", &src, "--size", "640x512"]);
    assert_ne!(code, 0);
    assert!(err.contains("rec.y16") && err.contains("--size"), "{err}");
    // The right size replays all three frames.
    let (code, out, err) = srsnet(&["run", "--model", "tophat", "--source", &src, "--size", "64x48"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3);
    // --count stops any source, not only the synthetic one.
    let (code, out, err) = srsnet(&[
        "run", "--model", "tophat", "--source", &src, "--size", "64x48", "--count", "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2);
    assert!(
        err.contains("first 2 frames") && err.contains("run: 2/2 (100 %)"),
        "{err}"
    );
}

#[test]
fn run_with_calibration_of_the_wrong_size_reports_every_frame() {
    let cal = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/synthetic-320x256-seed7.safetensors");
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--size",
        "160x128",
        "--count",
        "3",
        "--calibration",
        cal.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "every frame failed: the exit code must say so");
    assert_eq!(out.lines().count(), 0);
    assert!(
        err.contains("320×256") && err.contains("160×128") && err.contains("frame errors 3"),
        "{err}"
    );
    assert!(err.contains("3 frames could not be processed"), "{err}");
}

#[test]
fn the_synthetic_camera_comes_with_its_factory_calibration() {
    // Its 40 stuck pixels, half of them bright, are replaced unless --uncalibrated: the
    // synthetic-tuned top-hat then raises no false alarm, where it raises some on every frame.
    let d = tmp("factory");
    let fa = |extra: &[&str]| {
        let stats = d.join("s.json");
        let mut args = vec![
            "run",
            "--model",
            "tophat:9:6",
            "--count",
            "6",
            "--stats-json",
            stats.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = srsnet(&args);
        assert_eq!(code, 0, "{err}");
        let s = read_json(&stats);
        std::fs::remove_file(&stats).unwrap();
        (
            s["false_targets_per_frame"].as_f64().unwrap(),
            s["pd"].as_f64().unwrap(),
            err,
        )
    };
    let (ft, pd, err) = fa(&[]);
    assert!(err.contains("factory profile (two-point NUC, 40 bad pixels"), "{err}");
    assert_eq!((ft, pd), (0.0, 1.0));
    let (ft, _, err) = fa(&["--uncalibrated"]);
    assert!(!err.contains("factory profile"), "{err}");
    assert!(ft >= 1.0, "the raw sensor's stuck pixels: {ft} false targets per frame");
    // Other sources have no factory profile to skip.
    let seq = d.join("seq");
    synth(&seq, &["--count", "2", "--size", "64x48"]);
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        seq.to_str().unwrap(),
        "--uncalibrated",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--uncalibrated is for the synthetic source"), "{err}");
}

#[test]
fn the_defect_map_finds_the_uncalibrated_cameras_stuck_pixels_over_time() {
    // The raw synthetic sensor's stuck pixels, with no profile: after 3 frames as isolated
    // spikes they are replaced, so only the first 2 of 12 frames raise their false targets.
    let d = tmp("defects");
    let stats = |extra: &[&str]| {
        let path = d.join("s.json");
        let mut args = vec!["run", "--model", "tophat:9:6", "--uncalibrated", "--count", "12"];
        args.extend_from_slice(&["--stats-json", path.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let (code, _, err) = srsnet(&args);
        assert_eq!(code, 0, "{err}");
        let s = read_json(&path);
        std::fs::remove_file(&path).unwrap();
        (s, err)
    };
    let (off, _) = stats(&["--defect-frames", "0"]);
    let (on, err) = stats(&["--defect-frames", "3"]);
    let ft = |s: &serde_json::Value| s["false_targets_per_frame"].as_f64().unwrap();
    assert!(ft(&off) >= 1.0, "{off}");
    assert!(ft(&on) <= ft(&off) * 0.25, "with the map {} vs {}", ft(&on), ft(&off));
    assert!(on["pd"].as_f64().unwrap() >= off["pd"].as_f64().unwrap(), "{on}");
    // The camera has 40 stuck pixels, some of them touching or not far from their neighbours;
    // the smooth scene itself has none to find.
    let most = on["defect_pixels"]["most_in_a_frame"].as_u64().unwrap();
    assert!((25..=40).contains(&most), "{on}");
    // Replaced in frames 3 to 12 only (sensor noise lets a few drop out now and then).
    let replaced = on["defect_pixels"]["replaced"].as_u64().unwrap();
    assert!(replaced > 9 * most && replaced <= 10 * most, "{on}");
    assert!(err.contains("stuck pixels replaced by the defect map"), "{err}");
    assert_eq!(off["defect_pixels"]["replaced"], 0);
    for (flag, value, expected) in [
        ("--defect-contrast", "1.5", "between 0 and 1"),
        ("--defect-contrast", "nan", "between 0 and 1"),
        ("--defect-frames", "many", "--defect-frames <DEFECT_FRAMES>"),
    ] {
        let (code, _, err) = srsnet(&["run", "--model", "tophat", "--count", "1", flag, value]);
        assert_ne!(code, 0, "{flag} {value}");
        assert!(err.contains(expected), "{flag} {value}: {err}");
    }
}

#[test]
fn run_synthetic_with_shipped_calibration_and_outputs() {
    let d = tmp("outputs");
    let cal = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/synthetic-320x256-seed7.safetensors");
    let (code, out, err) = srsnet(&[
        "run",
        "--model",
        "tophat:9:6",
        "--count",
        "5",
        "--calibration",
        cal.to_str().unwrap(),
        "--masks",
        d.join("m").to_str().unwrap(),
        "--overlays",
        d.join("o").to_str().unwrap(),
        "--stats-json",
        d.join("stats.json").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 5);
    assert_eq!(std::fs::read_dir(d.join("m")).unwrap().count(), 5);
    assert_eq!(std::fs::read_dir(d.join("o")).unwrap().count(), 5);
    let stats = read_json(&d.join("stats.json"));
    assert_eq!(stats["frames"], 5);
    assert!(stats["latency_ms"]["inference"]["p50"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["pd"], 1.0, "{stats}");
}

#[test]
fn infer_reports_a_corrupt_image_and_processes_the_others() {
    let d = tmp("infer");
    let (code, _, err) = srsnet(&[
        "synth",
        "--out",
        d.to_str().unwrap(),
        "--count",
        "2",
        "--size",
        "64x48",
        "--bits",
        "16",
        "--targets",
        "1",
        "--seed",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    let d = d.join("frames");
    std::fs::write(d.join("broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let weights = d.parent().unwrap().join("w.safetensors");
    let (code, _, err) = srsnet(&["init", "--preset", "lite", "--out", weights.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out_dir = d.parent().unwrap().join("out");
    let (code, out, err) = srsnet(&[
        "infer",
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        d.join("synthetic_0000.png").to_str().unwrap(),
        d.join("broken.png").to_str().unwrap(),
        d.join("synthetic_0001.png").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("broken.png") && err.contains("1 of 3 images failed"),
        "{err}"
    );
    assert_eq!(out.lines().count(), 2);
    for stem in ["synthetic_0000", "synthetic_0001"] {
        let mask = image::open(out_dir.join(format!("{stem}_mask.png"))).unwrap();
        assert_eq!((mask.width(), mask.height()), (64, 48), "mask at native size");
        let rec = read_json(&out_dir.join(format!("{stem}.json")));
        assert_eq!(rec["width"], 64);
    }
}

#[test]
fn cuda_without_the_feature_says_how_to_build() {
    if cfg!(feature = "cuda") {
        return;
    }
    let (code, _, err) = srsnet(&["bench", "--device", "cuda", "--iters", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("--features cuda"), "{err}");
}

/// Parses the figure before `label` in a line such as "… 0.123 images/s (4.5 s per step …".
fn number_before(out: &str, label: &str) -> f64 {
    let head = &out[..out.find(label).unwrap_or_else(|| panic!("no `{label}` in {out}"))];
    head.split_whitespace()
        .last()
        .and_then(|w| w.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before `{label}` in {out}"))
}

#[test]
fn bench_train_reports_throughput_step_time_and_memory() {
    for stage in ["recon", "seg"] {
        let (code, out, err) = srsnet(&[
            "bench", "--train", stage, "--preset", "lite", "--batch", "2", "--size", "32", "--iters", "1",
        ]);
        assert_eq!(code, 0, "{err}");
        let ips = number_before(&out, "images/s");
        let step = number_before(&out, "s per step");
        assert!(ips > 0.0 && step > 0.0, "{out}");
        // images/s and seconds per step describe the same measurement.
        assert!((ips * step / 2.0 - 1.0).abs() < 0.2, "{out}");
        if cfg!(target_os = "linux") {
            assert!(number_before(&out, "GB") > 0.0, "{out}");
        }
    }
}

#[test]
fn bench_train_rejects_an_unknown_stage_and_a_bad_size() {
    let (code, _, err) = srsnet(&["bench", "--train", "detector", "--preset", "lite", "--size", "32"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("detector") && err.contains("recon") && err.contains("seg"),
        "{err}"
    );
    let (code, _, err) = srsnet(&["bench", "--train", "seg", "--preset", "lite", "--size", "30"]);
    assert_ne!(code, 0);
    assert!(err.contains("30") && err.contains('8'), "{err}");
}

#[test]
fn publish_urls_without_a_topic_or_with_a_bad_port_are_refused() {
    for (url, expected) in [
        ("mqtt://localhost", "no topic"),
        ("mqtt://localhost/", "empty topic"),
        ("mqtt://localhost:99999/t", "bad port `99999`"),
        ("mqtt://localhost:0/t", "bad port `0`"),
        ("mqtt://:1883/t", "no host"),
        ("mqtt://localhost/a/#", "wildcard"),
        ("http://localhost/t", "expected mqtt://HOST[:PORT]/TOPIC"),
        ("mqtts://localhost/t", "TLS"),
    ] {
        let (code, _, err) = srsnet(&["run", "--model", "tophat", "--publish", url]);
        assert_ne!(code, 0, "{url}");
        assert!(err.contains(expected) && err.contains(url), "{url}: {err}");
    }
    let (code, _, err) = srsnet(&["run", "--publish", "mqtt://h/t", "--publish-qos", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains("--publish-qos"), "{err}");
}

#[test]
fn publish_without_the_feature_says_how_to_build() {
    if cfg!(feature = "mqtt") {
        return;
    }
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--count",
        "2",
        "--publish",
        "mqtt://127.0.0.1:1/t",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--features mqtt"), "{err}");
}

#[test]
fn long_jobs_report_progress_in_plain_lines_when_stderr_is_not_a_terminal() {
    let d = tmp("progress");
    // A replay of a known length: a raw recording of 3 frames.
    let src = raw_recording(&d.join("rec.y16"), 0);
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        &src,
        "--size",
        "64x48",
        "--jsonl",
        "/dev/null",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("run: 3/3 (100 %)"), "{err}");
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        &src,
        "--size",
        "64x48",
        "--jsonl",
        "/dev/null",
        "--no-progress",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("run: 3/3"), "{err}");
    // Calibration reads each flat-field recording with its own count.
    let hot_src = raw_recording(&d.join("hot.y16"), 0x80);
    let profile = d.join("cal.json");
    let (code, _, err) = srsnet(&[
        "calibrate",
        "--cold",
        &src,
        "--hot",
        &hot_src,
        "--size",
        "64x48",
        "--out",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("calibrate: 3/3 (100 %)").count(), 2, "{err}");
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn run_draws_truth_and_detections_in_overlays_and_plots_its_latency() {
    let d = tmp("plots");
    let (ov, plot) = (d.join("ov"), d.join("latency.png"));
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--count",
        "3",
        "--size",
        "96x64",
        "--jsonl",
        "/dev/null",
        "--overlays",
        ov.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(png_size(&plot), srsnet::plot::LATENCY_SIZE);
    // The synthetic source's truth rides along: green crosses; the baseline's detections: red boxes.
    let img = image::open(ov.join("000000_overlay.png")).unwrap().to_rgb8();
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(count(srsnet::overlay::TRUTH) >= 8, "truth marks");
    assert!(count(srsnet::overlay::DETECTION) > 0, "detection boxes");
    // A run whose every frame fails names the frame, not the empty plot.
    let bad = d.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("a.png"), b"not a png").unwrap();
    let bad_plot = d.join("bad.png");
    let (code, _, err) = srsnet(&[
        "run",
        "--model",
        "tophat",
        "--source",
        bad.to_str().unwrap(),
        "--jsonl",
        "/dev/null",
        "--plot",
        bad_plot.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("a.png") && err.contains("could not be processed"), "{err}");
    assert!(!bad_plot.exists());
    // A plot is never written over an input.
    let weights = d.join("w.safetensors");
    std::fs::copy(
        env!("CARGO_MANIFEST_DIR").to_string() + "/models/srsnet-lite.safetensors",
        &weights,
    )
    .unwrap();
    let (code, _, err) = srsnet(&[
        "run",
        "--count",
        "1",
        "--weights",
        weights.to_str().unwrap(),
        "--plot",
        weights.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("w.safetensors"), "{err}");
}

#[test]
fn eval_plots_a_sweep_and_refuses_a_single_threshold() {
    let d = tmp("eval-plot");
    let neg = d.join("neg");
    std::fs::create_dir_all(&neg).unwrap();
    for i in 0..2 {
        let img = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([((x * 3 + y * 5 + i * 40) % 200) as u8]));
        img.save(neg.join(format!("bg{i}.png"))).unwrap();
    }
    let plot = d.join("sweep.png");
    let (p, n) = (plot.to_str().unwrap(), neg.to_str().unwrap());
    let (code, out, err) = srsnet(&[
        "eval",
        "--model",
        "tophat",
        "--negatives",
        n,
        "--sweep",
        "0.3,0.6,0.9",
        "--plot",
        p,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("negatives"), "{out}");
    assert_eq!(png_size(&plot), srsnet::plot::SWEEP_SIZE);
    let (code, _, err) = srsnet(&[
        "eval",
        "--model",
        "tophat",
        "--negatives",
        n,
        "--sweep",
        "0.5",
        "--plot",
        p,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("at least two thresholds"), "{err}");
    let (code, _, err) = srsnet(&["eval", "--model", "tophat", "--negatives", n, "--plot", p]);
    assert_ne!(code, 0);
    assert!(err.contains("--sweep"), "{err}");
}

#[test]
fn eval_scores_a_recipes_training_sets_on_request() {
    let d = tmp("eval-training-sets");
    synth(
        &d.join("train-seq"),
        &["--count", "4", "--size", "96x64", "--seed", "3"],
    );
    synth(&d.join("val-seq"), &["--count", "2", "--size", "96x64", "--seed", "4"]);
    let neg = d.join("neg");
    std::fs::create_dir_all(&neg).unwrap();
    for i in 0..3 {
        let img = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([((x * 3 + y * 5 + i * 40) % 200) as u8]));
        img.save(neg.join(format!("bg{i}.png"))).unwrap();
    }
    let recipe = d.join("recipe.json");
    let text = serde_json::json!({
        "train": [
            {"kind": "unlabeled", "dir": neg},
            {"kind": "sequence", "dir": d.join("train-seq"), "weight": 0.5},
            {"kind": "negatives", "dir": neg},
        ],
        "validation": [{"kind": "sequence", "dir": d.join("val-seq")}],
    });
    std::fs::write(&recipe, text.to_string()).unwrap();
    let r = recipe.to_str().unwrap();
    let rows = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut argv = vec!["eval", "--model", "tophat", "--recipe", r, "--json"];
        argv.extend_from_slice(extra);
        let (code, out, err) = srsnet(&argv);
        assert_eq!(code, 0, "{err}");
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    // Annotated targets per sequence: centroids.csv's lines less its header.
    let targets = |seq: &str| {
        std::fs::read_to_string(d.join(seq).join("centroids.csv"))
            .unwrap()
            .lines()
            .count()
            - 1
    };
    let trained = rows(&["--training-sets"]);
    let names: Vec<&str> = trained.iter().map(|v| v["set"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "the unlabelled set is not scored: {names:?}");
    assert!(
        names[0].starts_with("trained-on sequence ") && names[0].ends_with("train-seq"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("trained-on negatives ") && names[1].ends_with("neg"),
        "{names:?}"
    );
    let m = |v: &serde_json::Value, k: &str| v["metrics"][k].as_u64().unwrap() as usize;
    assert_eq!(
        (m(&trained[0], "images"), m(&trained[0], "targets")),
        (4, targets("train-seq"))
    );
    assert_eq!((m(&trained[1], "images"), m(&trained[1], "targets")), (3, 0));
    let held_out = rows(&[]);
    assert_eq!(held_out.len(), 1);
    assert!(
        held_out[0]["set"].as_str().unwrap().ends_with("val-seq"),
        "{held_out:?}"
    );
    assert_eq!(m(&held_out[0], "targets"), targets("val-seq"));
    // Without a recipe there are no training sets to score.
    let n = neg.to_str().unwrap();
    for argv in [
        &["eval", "--model", "tophat", "--negatives", n, "--training-sets"][..],
        &["eval", "--model", "tophat", "--training-sets"][..],
    ] {
        let (code, out, err) = srsnet(argv);
        assert_ne!(code, 0, "{argv:?}");
        assert!(err.contains("--recipe"), "{argv:?}: {err}");
        assert!(out.is_empty(), "{argv:?}: nothing is scored: {out}");
    }
}

#[test]
fn a_grow_threshold_above_the_threshold_is_refused_by_every_command() {
    let d = tmp("grow");
    synth(&d.join("seq"), &["--count", "2", "--size", "64x48"]);
    let seq = d.join("seq");
    let s = seq.to_str().unwrap();
    let frame = first_frame(&seq);
    let out_dir = d.join("out");
    let (f, o) = (frame.to_str().unwrap(), out_dir.to_str().unwrap());
    let cases: [&[&str]; 4] = [
        &[
            "run",
            "--source",
            s,
            "--threshold",
            "0.5",
            "--grow",
            "0.7",
            "--jsonl",
            "/dev/null",
        ],
        &["eval", "--sequence", s, "--sweep", "0.5,0.9", "--grow", "0.7"],
        &["eval", "--sequence", s, "--grow", "0.99"],
        &["infer", "--out", o, "--grow", "0.99", f],
    ];
    for argv in cases {
        let (code, out, err) = srsnet(argv);
        assert_ne!(code, 0, "{argv:?}");
        assert!(
            err.contains("--grow: the grow threshold") && err.contains("is above the threshold"),
            "{argv:?}: {err}"
        );
        assert!(out.is_empty(), "{argv:?}: nothing is scored or written: {out}");
    }
    let (code, _, err) = srsnet(&["run", "--source", s, "--grow", "high", "--jsonl", "/dev/null"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("`high`: a grow threshold is a probability in [0, 1), or none"),
        "{err}"
    );
}

#[test]
fn eval_rows_record_their_rule_and_growing_adds_no_false_target() {
    let d = tmp("grow-eval");
    synth(&d.join("seq"), &["--count", "4", "--size", "96x64"]);
    let s = d.join("seq");
    let rows = |grow: &str| -> Vec<serde_json::Value> {
        let argv = [
            "eval",
            "--sequence",
            s.to_str().unwrap(),
            "--sweep",
            "0.9,0.95",
            "--grow",
            grow,
            "--json",
        ];
        let (code, out, err) = srsnet(&argv);
        assert_eq!(code, 0, "{err}");
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (grown, plain) = (rows("0.5"), rows("none"));
    assert_eq!(grown.len(), 2);
    for (g, p) in grown.iter().zip(&plain) {
        assert_eq!(g["threshold"], p["threshold"]);
        assert_eq!((g["grow"].as_f64(), p["grow"].is_null()), (Some(0.5), true), "{g} {p}");
        let ft = |v: &serde_json::Value| v["metrics"]["false_targets"].as_u64().unwrap();
        assert!(ft(g) <= ft(p), "{g} {p}");
        assert!(g["metrics"]["targets"].as_u64() > Some(0), "{g}");
    }
    assert_eq!(grown[0]["threshold"].as_f64(), Some(0.9));
}

#[test]
fn run_and_infer_record_the_rule_they_detect_with() {
    let d = tmp("grow-record");
    synth(&d.join("seq"), &["--count", "3", "--size", "96x64"]);
    let s = d.join("seq");
    let (code, out, err) = srsnet(&["run", "--source", s.to_str().unwrap(), "--grow", "0.3", "--jsonl", "-"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let frame = first_frame(&s);
    let o = d.join("out");
    let run_infer = |grow: &str| {
        let (code, out, err) = srsnet(&[
            "infer",
            "--out",
            o.to_str().unwrap(),
            "--grow",
            grow,
            frame.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let (grown, plain) = (run_infer("0.3"), run_infer("none"));
    // The shipped operating point's threshold (plain 0.5) with the asked grow threshold.
    let grow = grown["grow"].as_f64().map(|g| (g * 1e6).round() / 1e6);
    assert_eq!((grown["threshold"].as_f64(), grow), (Some(0.5), Some(0.3)));
    assert!(plain["grow"].is_null());
    // A grown target holds its plain self: never more targets, never a smaller one.
    let areas = |v: &serde_json::Value| {
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["area"].as_u64().unwrap())
            .sum::<u64>()
    };
    let count = |v: &serde_json::Value| v["targets"].as_array().unwrap().len();
    assert!(count(&grown) <= count(&plain) && count(&plain) > 0, "{grown} {plain}");
    // (Here they may also stay the same: the shipped net (v30) marks this frame's targets
    // sharply, nothing around them above 0.2; that growing widens real targets' masks is tested
    // on SIRST in tests/shipped_weights.rs.)
    assert!(areas(&grown) >= areas(&plain), "{grown} {plain}");
}

#[test]
fn gst_without_the_feature_says_how_to_build() {
    if cfg!(feature = "gstreamer") {
        return;
    }
    let (code, _, err) = srsnet(&["run", "--model", "tophat", "--source", "gst:videotestsrc num-buffers=2"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--features gstreamer") && err.contains("videotestsrc"),
        "{err}"
    );
}

#[test]
fn calibrate_rebuilds_the_shipped_synthetic_profile_from_its_flat_fields() {
    // calibration/README.md's recipe: 16 cold and 16 hot flat fields of the synthetic camera,
    // read frame by frame into per-pixel statistics. The result must be the committed profile.
    let d = tmp("rebuild");
    let (cold, hot, out) = (d.join("cold"), d.join("hot"), d.join("cal.safetensors"));
    for (dir, level) in [(&cold, "0.3"), (&hot, "0.7")] {
        synth(dir, &["--count", "16", "--flat", level, "--seed", "7"]);
    }
    let (code, _, err) = srsnet(&[
        "calibrate",
        "--cold",
        cold.to_str().unwrap(),
        "--hot",
        hot.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let made = srsnet::calibration::Profile::load(&out).unwrap();
    let shipped_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/synthetic-320x256-seed7.safetensors");
    let shipped = srsnet::calibration::Profile::load(&shipped_path).unwrap();
    assert_eq!((made.width, made.height), (320, 256));
    assert_eq!(made.bad.iter().filter(|&&b| b).count(), 40);
    assert_eq!(made.bad, shipped.bad);
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst(&made.gain, &shipped.gain) < 1e-4, "gain");
    assert!(worst(&made.offset, &shipped.offset) < 1e-2, "offset (raw units)");
    // A folder with no frames is refused with its name.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = srsnet(&[
        "calibrate",
        "--cold",
        empty.to_str().unwrap(),
        "--hot",
        hot.to_str().unwrap(),
        "--out",
        d.join("x.safetensors").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn stuck_pixels_do_not_switch_off_the_targets_of_synthetic_sequences() {
    // Stuck-bright pixels (1-2 in a 96×64 frame, about 21 in a 320×256 one), read raw, must not
    // switch off the dim targets around them, on eleven sequences of `srsnet synth`. It replaced
    // a test on the first of them alone (seed 7), which decided between nets by one marginal
    // target (models/README.md, "Is the probe one sequence's verdict?"); the shipped weights
    // find at least 0.9 of each frame size's targets.
    let d = tmp("stuck-many");
    let sequences: [(&str, &str, &[u64]); 3] = [
        ("96x64", "8", &[7]),
        ("96x64", "20", &[11, 12, 13, 14, 15]),
        ("320x256", "20", &[11, 12, 13, 14, 15]),
    ];
    let mut found = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    for (size, count, seeds) in sequences {
        for seed in seeds {
            let seq = d.join(format!("{size}-{seed}"));
            synth(&seq, &["--count", count, "--size", size, "--seed", &seed.to_string()]);
            let stats = seq.join("stats.json");
            let (code, _, err) = srsnet(&[
                "run",
                "--source",
                seq.to_str().unwrap(),
                "--jsonl",
                "/dev/null",
                "--stats-json",
                stats.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{err}");
            let s = read_json(&stats);
            let tally = found.entry(size).or_default();
            tally.0 += s["hits"].as_u64().unwrap();
            tally.1 += s["targets"].as_u64().unwrap();
        }
    }
    assert_eq!(found["96x64"].1, 16 + 5 * 40, "two targets a frame");
    for (size, (hits, targets)) in found {
        assert!(
            hits as f64 >= 0.9 * targets as f64,
            "{size}: {hits} of {targets} targets"
        );
    }
}

#[test]
fn static_register_and_gap_need_static_clutter_and_stay_within_their_limits() {
    let refused = |extra: &[&str]| {
        let mut argv = vec!["run", "--model", "tophat", "--source", "synthetic"];
        argv.extend_from_slice(extra);
        let (code, _, err) = srsnet(&argv);
        assert_ne!(code, 0, "{argv:?} was accepted");
        err
    };
    let err = refused(&["--static-register", "4"]);
    assert!(err.contains("--static-clutter"), "{err}");
    let err = refused(&["--static-clutter", "5", "--static-register", "65"]);
    assert!(err.contains("65") && err.contains("0..=64"), "{err}");
    let err = refused(&["--static-clutter", "5", "--static-gap", "101"]);
    assert!(err.contains("101") && err.contains("0..=100"), "{err}");
}

#[test]
fn the_motion_gate_refuses_settings_out_of_range_in_run_and_eval() {
    for cmd in [
        vec!["run", "--model", "tophat", "--source", "synthetic"],
        vec!["eval", "--model", "tophat", "--sequence", "no-such-dir"],
    ] {
        let refused = |extra: &[&str]| {
            let mut argv = cmd.clone();
            argv.extend_from_slice(extra);
            let (code, _, err) = srsnet(&argv);
            assert_ne!(code, 0, "{argv:?} was accepted");
            err
        };
        let err = refused(&["--motion-gate", "0", "--motion-min", "0.5"]);
        assert!(err.contains("'0'") && err.contains("1..=30"), "{err}");
        let err = refused(&["--motion-gate", "31", "--motion-min", "0.5"]);
        assert!(err.contains("1..=30"), "{err}");
        let err = refused(&["--motion-gate", "5", "--motion-min", "1.5"]);
        assert!(err.contains("share from 0 to 1"), "{err}");
        let err = refused(&["--motion-min", "0.5"]);
        assert!(err.contains("--motion-gate"), "{err}");
        let err = refused(&["--motion-gate", "5"]);
        assert!(err.contains("--motion-min"), "{err}");
        let err = refused(&["--motion-gate", "5", "--motion-min", "0.5", "--motion-register", "65"]);
        assert!(err.contains("0..=64"), "{err}");
    }
}
