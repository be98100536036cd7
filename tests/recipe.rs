//! Mixed training sets: one run draws from a derived-mask sequence and target-free frames
//! with a weight each, validates on both kinds, and records the recipe.

use std::path::{Path, PathBuf};
use std::process::Command;

fn srsnet(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_srsnet"))
        .args(args)
        .output()
        .expect("run srsnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-recipe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small 1-channel model, so a training run takes seconds.
fn small_preset(dir: &Path) -> PathBuf {
    let net = serde_json::json!({ "stem": 8, "widths": [8, 8, 8, 8], "blocks": [1, 1, 1, 1] });
    let cfg = serde_json::json!({
        "name": "test-small", "in_channels": 1, "recon_out_channels": 1, "dpconv_kernel": 3,
        "recon": net, "seg": net,
    });
    let p = dir.join("small.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

fn synth(out: &Path, targets: &str, seed: &str, count: &str) {
    let (code, err) = srsnet(&[
        "synth",
        "--out",
        s(out),
        "--count",
        count,
        "--size",
        "80x64",
        "--targets",
        targets,
        "--seed",
        seed,
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_recipe_run_trains_on_mixed_data_and_records_it() {
    let d = tmp("mixed");
    synth(&d.join("seq"), "2", "3", "6");
    synth(&d.join("seq-val"), "2", "4", "3");
    // Target-free frames: synthetic scenes without targets, in a plain folder.
    synth(&d.join("neg"), "0", "5", "4");
    let recipe = serde_json::json!({
        "train": [
            { "kind": "sequence", "dir": "seq/", "weight": 1.0 },
            { "kind": "negatives", "dir": "neg/frames", "exclude": "held-out.txt", "weight": 0.5 }
        ],
        "validation": [
            { "kind": "sequence", "dir": "seq-val" },
            { "kind": "negatives", "dir": "neg/frames", "list": "held-out.txt" }
        ]
    });
    std::fs::write(d.join("held-out.txt"), "synthetic_0003.png\n").unwrap();
    std::fs::write(d.join("recipe.json"), recipe.to_string()).unwrap();
    let out = d.join("run");
    let (code, err) = srsnet(&[
        "train",
        "all",
        "--recipe",
        s(&d.join("recipe.json")),
        "--preset",
        s(&small_preset(&d)),
        "--size",
        "32",
        "--batch",
        "4",
        "--epochs",
        "2",
        "--recon-epochs",
        "1",
        "--crop",
        "16",
        "--hard-negatives",
        "0.5",
        "--negative-loss",
        "logits",
        "--negative-weight",
        "0.5",
        "--target-weight",
        "0.5",
        "--val-threshold",
        "0.9",
        "--val-grow",
        "0.5",
        "--stuck-pixels",
        "0.5",
        "--stuck-label",
        "ignored",
        "--stuck-count",
        "per-area",
        "--val-min-pd",
        "1",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    // 6 frames of 80×64 in 32-px tiles (3×2 each) and 3 target-free frames at weight 0.5.
    assert!(
        err.contains("train: sequence") && err.contains("(36 samples, weight 1)"),
        "{err}"
    );
    assert!(
        err.contains("train: negatives") && err.contains("(18 samples, weight 0.5)"),
        "{err}"
    );
    assert!(
        err.contains("validate: negatives") && err.contains("(1 inputs)"),
        "{err}"
    );
    // Progress, as plain lines because stderr is a pipe: each stage's last batch, with its loss.
    for stage in ["recon", "seg"] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("{stage}: ")) && l.contains("(100 %)"))
            .unwrap_or_else(|| panic!("no final {stage} progress line in {err}"));
        assert!(line.contains("loss "), "{line}");
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("recipe.json")).unwrap()).unwrap();
    assert_eq!(saved["train"].as_array().unwrap().len(), 2);
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let seg: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["stage"] == "seg" && v.get("val").is_some())
        .unwrap();
    // The segmentation stage mined its net's false targets over all 54 training tiles first.
    let mined: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("mined_false_targets").is_some())
        .unwrap_or_else(|| panic!("no mining record in {log}"));
    assert_eq!(
        (
            mined["stage"].as_str(),
            mined["next_epoch"].as_u64(),
            mined["samples"].as_u64()
        ),
        (Some("seg"), Some(1), Some(54))
    );
    let sets = seg["val"]["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{seg}");
    assert_eq!(seg["val"]["threshold"].as_f64(), Some(0.9), "{seg}");
    assert_eq!(seg["val"]["grow"].as_f64(), Some(0.5), "{seg}");
    assert!(
        sets[1]["metrics"]["false_targets_per_frame"].as_f64().is_some(),
        "{seg}"
    );
    let file = srsnet::model::weights_file::WeightsFile::open(&out.join("srsnet.safetensors")).unwrap();
    assert_eq!(
        file.info["recipe"]["validation"].as_array().unwrap().len(),
        2,
        "{}",
        file.info
    );
    // With a Pd floor of 1 no epoch that misses a target of the sequence is kept as the best;
    // if none found them all, the last epoch is the result, with a warning.
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["stage"] == "seg" && v.get("val").is_some())
        .collect();
    for e in &epochs {
        let below = e["val"]["below_pd_floor"].as_array().unwrap_or_else(|| panic!("{e}"));
        let pd = e["val"]["sets"][0]["metrics"]["pd"].as_f64().unwrap();
        assert_eq!(below.is_empty(), pd >= 1.0, "{e}");
        assert!(
            below.is_empty() || e["best"] != true,
            "an epoch below the floor was kept: {e}"
        );
    }
    if epochs.iter().all(|e| e["best"] != true) {
        assert!(err.contains("reached --val-min-pd 1"), "{err}");
    }
    // The record says which epoch the weights are: the best, or else the last (2).
    let kept = file.info["seg_kept_epoch"].as_u64();
    assert_eq!(kept, file.info["seg_best_epoch"].as_u64().or(Some(2)), "{}", file.info);
    // The best epoch's validation is in the record (the mining records between epochs are not
    // mistaken for it).
    assert!(file.info["val_metrics"]["sets"].is_array(), "{}", file.info);
    // The training options are in the weights' record.
    assert_eq!(
        (
            file.info["hard_negatives"].as_f64(),
            file.info["negative_loss"].as_str(),
            file.info["negative_weight"].as_f64(),
            file.info["target_weight"].as_f64(),
            file.info["val_threshold"].as_f64(),
            file.info["val_grow"].as_f64(),
            file.info["val_min_pd"].as_f64()
        ),
        (
            Some(0.5),
            Some("logits"),
            Some(0.5),
            Some(0.5),
            Some(0.9),
            Some(0.5),
            Some(1.0)
        ),
        "{}",
        file.info
    );
    assert_eq!(
        (
            file.info["synthesis"]["stuck_pixels"].as_f64(),
            file.info["synthesis"]["stuck_label"].as_str()
        ),
        (Some(0.5), Some("ignored")),
        "{}",
        file.info
    );
}

#[test]
fn bad_recipes_are_refused_with_the_reason() {
    let d = tmp("bad");
    let write = |v: serde_json::Value| {
        let p = d.join("r.json");
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let cases = [
        (
            serde_json::json!({"train": [{"kind": "sequence", "dir": "nowhere"}]}),
            "nowhere",
        ),
        (
            serde_json::json!({"train": [{"kind": "sequence", "dri": "x"}]}),
            "not a valid recipe",
        ),
        (
            serde_json::json!({"train": [{"kind": "negatives", "dir": ".", "weight": -1}]}),
            "weight",
        ),
        (
            serde_json::json!({"train": [{"kind": "unlabeled", "dir": "."}]}),
            "no labelled",
        ),
    ];
    for (recipe, needle) in cases {
        let p = write(recipe);
        let (code, err) = srsnet(&["train", "all", "--recipe", s(&p), "--out", s(&d.join("o"))]);
        assert_ne!(code, 0);
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let out = d.join("o");
    let flags: [(&[&str], &[&str]); 14] = [
        (&["--dataset", "masks:x"], &["unknown kind"]),
        (
            &["--data", "/x", "--hard-negatives", "0.3"],
            &["--hard-negatives 0.3 needs --crop"],
        ),
        (
            &["--data", "/x", "--negative-loss", "focal"],
            &["'focal'", "mass", "logits"],
        ),
        (&["--hard-negatives", "1.5", "--crop", "16"], &["--hard-negatives"]),
        (
            &["--stuck-pixels", "1.5"],
            &["--stuck-pixels", "expected a number in [0, 1]"],
        ),
        (&["--stuck-label", "target"], &["'target'", "background", "ignored"]),
        (&["--stuck-count", "many"], &["'many'", "per-crop", "per-area"]),
        (
            &["--val-min-pd", "1.2"],
            &["--val-min-pd", "expected a number in [0, 1]"],
        ),
        (&["--negative-weight=-1"], &["--negative-weight", "non-negative"]),
        (&["--target-weight=-0.5"], &["--target-weight", "non-negative"]),
        (
            &["--val-threshold", "1"],
            &["--val-threshold", "strictly between 0 and 1"],
        ),
        (
            &["--val-threshold", "0"],
            &["--val-threshold", "strictly between 0 and 1"],
        ),
        (
            &["--data", "x", "--val-threshold", "0.5", "--val-grow", "0.7"],
            &["--val-grow: the grow threshold 0.7 is above the threshold 0.5"],
        ),
        (&["--val-grow", "1"], &["--val-grow", "strictly between 0 and 1"]),
    ];
    for (args, needles) in flags {
        let mut argv = vec!["train", "all", "--out", s(&out)];
        argv.extend_from_slice(args);
        let (code, err) = srsnet(&argv);
        assert_ne!(code, 0, "{args:?}");
        assert!(needles.iter().all(|n| err.contains(n)), "{args:?}: {err}");
    }
}

/// Copies weights file `from` to `to` without tensor `drop`, keeping the metadata.
fn without_tensor(from: &Path, to: &Path, drop: &str) {
    let bytes = std::fs::read(from).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(n, _)| n != drop).collect();
    assert_eq!(kept.len() + 1, st.len(), "{drop} is in {}", from.display());
    safetensors::serialize_to_file(kept, meta.metadata().clone(), to).unwrap();
}

/// `srsnet train STAGE ARGS... --out OUT` on `datasets` (`--dataset` values), 1 epoch of
/// 32-px images in batches of 4.
fn train_small(datasets: &[String], stage: &str, args: &[&str], out: &Path) -> (i32, String) {
    let mut a = vec![
        "train",
        stage,
        "--out",
        s(out),
        "--size",
        "32",
        "--batch",
        "4",
        "--epochs",
        "1",
    ];
    for d in datasets {
        a.extend(["--dataset", d.as_str()]);
    }
    a.extend(args);
    srsnet(&a)
}

/// Trains both stages of `preset` on `datasets` into `out` (one epoch each); its weights file.
fn small_base(datasets: &[String], preset: &Path, out: &Path) -> PathBuf {
    let (code, err) = train_small(datasets, "all", &["--recon-epochs", "1", "--preset", s(preset)], out);
    assert_eq!(code, 0, "{err}");
    out.join("srsnet.safetensors")
}

/// `small_preset`'s model with S's level-1 and level-3 layers two blocks deep.
fn deeper_preset(dir: &Path) -> PathBuf {
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(small_preset(dir)).unwrap()).unwrap();
    cfg["name"] = "test-small-deep".into();
    cfg["seg"]["blocks"] = serde_json::json!([1, 2, 1, 2]);
    let p = dir.join("small-deep.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

#[test]
fn a_deeper_preset_fine_tunes_from_the_file_it_deepens() {
    let d = tmp("deepen");
    synth(&d.join("seq"), "2", "3", "4");
    let (preset, deeper) = (small_preset(&d), deeper_preset(&d));
    let data = [format!("sequence:{}", s(&d.join("seq")))];
    let train = |stage: &str, args: &[&str], out: &Path| train_small(&data, stage, args, out);
    let init = small_base(&data, &preset, &d.join("base"));

    let deep = d.join("deep");
    let (code, err) = train(
        "seg",
        &["--init", s(&init), "--lr", "1e-12", "--preset", s(&deeper)],
        &deep,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("S deepened by 4 Res-CBAM blocks, each starting as the identity"),
        "{err}"
    );
    let file = srsnet::model::weights_file::WeightsFile::open(&deep.join("srsnet.safetensors")).unwrap();
    assert_eq!(file.config.seg.blocks, [1, 2, 1, 2]);
    let from = &file.info["fine_tuned_from"];
    assert_eq!(
        from["deepened_from"]["seg"]["blocks"],
        serde_json::json!([1, 1, 1, 1]),
        "{}",
        file.info
    );
    // At a learning rate of 1e-12 every weight stays where it started: the file's convolutions,
    // and an added block's last batch norm at 0 (its residual branch off).
    let (before, after) = (tensors(&init), tensors(&deep.join("srsnet.safetensors")));
    for (name, v) in &before {
        if name.ends_with("weight") && !name.contains("bn") {
            assert_eq!(v, &after[name], "{name}");
        }
    }
    for layer in ["conv1_0", "conv1_1", "conv1_2", "conv3_0"] {
        let gamma = &after[&format!("seg.{layer}.1.bn2.weight")];
        assert!(gamma.iter().all(|&g| g == 0.0), "{layer}: {gamma:?}");
        assert!(!before.contains_key(&format!("seg.{layer}.1.bn2.weight")));
    }

    // A preset that changes more than the number of S's blocks is refused.
    let mut wider: serde_json::Value = serde_json::from_slice(&std::fs::read(&deeper).unwrap()).unwrap();
    wider["seg"]["widths"] = serde_json::json!([8, 16, 8, 8]);
    let wider_path = d.join("wider.json");
    std::fs::write(&wider_path, wider.to_string()).unwrap();
    let (code, err) = train("seg", &["--init", s(&init), "--preset", s(&wider_path)], &d.join("w"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("nor one that it deepens (the same model with more of S's blocks"),
        "{err}"
    );
}

#[test]
fn a_motion_preset_fine_tunes_from_a_single_frame_file_and_runs_on_sequences() {
    let d = tmp("motion");
    synth(&d.join("seq"), "2", "3", "6");
    synth(&d.join("val"), "2", "7", "4");
    let preset = small_preset(&d);
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&preset).unwrap()).unwrap();
    cfg["name"] = "test-small-motion".into();
    cfg["motion_channel"] = true.into();
    let motion_preset = d.join("small-motion.json");
    std::fs::write(&motion_preset, cfg.to_string()).unwrap();
    let data = [format!("sequence:{}", s(&d.join("seq")))];
    let train = |stage: &str, args: &[&str], out: &Path| train_small(&data, stage, args, out);
    let init = small_base(&data, &preset, &d.join("base"));

    let out = d.join("m");
    let val = format!("sequence:{}", s(&d.join("val")));
    let args = [
        "--init",
        s(&init),
        "--lr",
        "1e-12",
        "--preset",
        s(&motion_preset),
        "--motion-lag",
        "2",
        "--motion-reach",
        "4",
        "--decoys",
        "0.5",
        "--synthetic-targets",
        "0.5",
        "--val",
        &val,
    ];
    let (code, err) = train("seg", &args, &out);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("S's stem takes a motion plane"), "{err}");
    let weights = out.join("srsnet.safetensors");
    let file = srsnet::model::weights_file::WeightsFile::open(&weights).unwrap();
    assert!(file.config.motion_channel);
    let m = file.preprocess.motion.expect("the motion input is stored");
    assert_eq!((m.lag, m.reach), (2, 4));
    assert_eq!(
        file.info["fine_tuned_from"]["motion_added_to"]["name"], "test-small",
        "{}",
        file.info
    );
    // S's stem: the file's weights on the image plane, zero on the motion plane (lr 1e-12).
    let (before, after) = (tensors(&init), tensors(&weights));
    let (old, new) = (&before["seg.conv1.0.weight"], &after["seg.conv1.0.weight"]);
    assert_eq!((old.len(), new.len()), (8 * 9, 8 * 2 * 9));
    for o in 0..8 {
        assert_eq!(new[o * 18..o * 18 + 9], old[o * 9..o * 9 + 9], "output {o}");
        assert!(new[o * 18 + 9..o * 18 + 18].iter().all(|&v| v == 0.0), "output {o}");
    }
    // The motion model evaluates and streams a sequence (each frame with its motion plane).
    let val_dir = d.join("val");
    let eval_val = |w: &Path, extra: &[&str]| {
        let mut argv = vec!["eval", "--sequence", s(&val_dir), "--weights", s(w)];
        argv.extend_from_slice(extra);
        srsnet(&argv)
    };
    let (code, err) = eval_val(&weights, &[]);
    assert_eq!(code, 0, "{err}");
    // Its single-frame behaviour (zero planes) is scored on request; a single-frame model has
    // no planes to zero.
    let (code, err) = eval_val(&weights, &["--still"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = eval_val(&init, &["--still"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--still zeroes a motion model's motion planes"), "{err}");
    let jsonl = d.join("run.jsonl");
    let (code, err) = srsnet(&[
        "run",
        "--source",
        s(&d.join("val")),
        "--weights",
        s(&weights),
        "--jsonl",
        s(&jsonl),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap().lines().count(), 4);
    // A still image runs through a motion model with a zero motion plane, on both engines,
    // and an untrained motion model is written with the default motion input.
    let frame = std::fs::read_dir(d.join("val/frames"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for engine in ["plan", "candle"] {
        let out = d.join(format!("infer-{engine}"));
        let (code, err) = srsnet(&[
            "infer",
            s(&frame),
            "--weights",
            s(&weights),
            "--engine",
            engine,
            "--out",
            s(&out),
        ]);
        assert_eq!(code, 0, "{engine}: {err}");
    }
    let fresh = d.join("fresh.safetensors");
    let (code, err) = srsnet(&["init", "--preset", s(&motion_preset), "--out", s(&fresh)]);
    assert_eq!(code, 0, "{err}");
    let fresh = srsnet::model::weights_file::WeightsFile::open(&fresh).unwrap();
    assert_eq!(fresh.preprocess.motion, Some(srsnet::temporal::MotionInput::DEFAULT));

    // Refused: R's stage with a motion preset, a lag out of range, and a motion file
    // fine-tuned as a single-frame model.
    let (code, err) = train("all", &["--preset", s(&motion_preset)], &d.join("r"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("takes a motion plane, which only S sees"), "{err}");
    let (code, err) = train(
        "seg",
        &["--init", s(&init), "--preset", s(&motion_preset), "--motion-lag", "0"],
        &d.join("l"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("lag 0 frames, expected 1 to 30"), "{err}");
    let (code, err) = train(
        "seg",
        &["--init", s(&init), "--preset", s(&preset), "--decoys", "0.5"],
        &d.join("dc"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--decoys 0.5: decoys are told from targets by the motion plane"),
        "{err}"
    );
    let (code, err) = train("seg", &["--init", s(&weights), "--preset", s(&preset)], &d.join("s"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("its model is `test-small-motion`"), "{err}");
}

fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let file = srsnet::model::weights_file::WeightsFile::open(path).unwrap();
    file.tensors(candle_core::DType::F32)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn fine_tuning_starts_from_a_weights_file_and_keeps_its_reconstruction_net() {
    let d = tmp("finetune");
    synth(&d.join("seq"), "2", "3", "4");
    synth(&d.join("neg"), "0", "5", "2");
    let preset = small_preset(&d);
    let data = [
        format!("sequence:{}", s(&d.join("seq"))),
        format!("negatives:{}@0.5", s(&d.join("neg/frames"))),
    ];
    let train = |stage: &str, args: &[&str], out: &Path| train_small(&data, stage, args, out);
    let init = small_base(&data, &preset, &d.join("base"));

    // A learning rate of 1e-12 leaves every fp16 weight where it was: S provably starts from
    // the file (a fresh initialisation would differ everywhere), and R is the file's.
    let ft = d.join("ft");
    let (code, err) = train(
        "seg",
        &["--init", s(&init), "--lr", "1e-12", "--preset", s(&preset)],
        &ft,
    );
    assert_eq!(code, 0, "{err}");
    let (before, after) = (tensors(&init), tensors(&ft.join("srsnet.safetensors")));
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let mut convs = 0;
    for (name, v) in &before {
        // BatchNorm running statistics move with every batch whatever the learning rate.
        if name.starts_with("recon.") || !name.contains("running_") {
            assert_eq!(v, &after[name], "{name}");
            convs += 1;
        }
    }
    assert!(convs > 100, "{convs}");
    let file = srsnet::model::weights_file::WeightsFile::open(&ft.join("srsnet.safetensors")).unwrap();
    let original = srsnet::model::weights_file::WeightsFile::open(&init).unwrap();
    assert_eq!(file.preprocess, original.preprocess, "the file's normalisation is kept");
    assert_eq!(file.info["fine_tuned_from"]["file"], s(&init), "{}", file.info);
    assert_eq!(file.info["fine_tuned_from"]["info"]["source"], "srsnet train");

    // A file lacking one of S's tensors is refused, naming it, instead of training that part
    // from scratch.
    let broken = d.join("broken.safetensors");
    without_tensor(&init, &broken, "seg.conv0_0.0.CONV.weight");
    let (code, err) = train("seg", &["--init", s(&broken), "--preset", s(&preset)], &d.join("b"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("broken.safetensors") && err.contains("`seg.conv0_0.0.CONV.weight` is missing"),
        "{err}"
    );

    // Another model than --preset names, and an output that would overwrite the input.
    let (code, err) = train("seg", &["--init", s(&init)], &d.join("c"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("its model is `test-small`, not the `lite` that --preset names, nor one that it deepens"),
        "{err}"
    );
    let bytes = std::fs::read(&init).unwrap();
    let (code, err) = train(
        "seg",
        &["--init", s(&init), "--preset", s(&preset), "--weights-out", s(&init)],
        &d.join("e"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&init).unwrap(), bytes);
}

#[test]
fn kept_epochs_become_weights_files_and_the_average_is_what_ships() {
    let d = tmp("keep-epochs");
    synth(&d.join("seq"), "2", "3", "4");
    synth(&d.join("val"), "2", "7", "3");
    let preset = small_preset(&d);
    let data = [format!("sequence:{}", s(&d.join("seq")))];
    let init = small_base(&data, &preset, &d.join("base"));
    let val = format!("sequence:{}", s(&d.join("val")));
    let out = d.join("ema");
    let train_with = |ema: &str, out: &Path, extra: &[&str]| {
        let mut argv = vec![
            "train",
            "seg",
            "--init",
            s(&init),
            "--preset",
            s(&preset),
            "--dataset",
            &data[0],
            "--val",
            &val,
            "--size",
            "32",
            "--batch",
            "4",
            "--epochs",
            "2",
            "--ema",
            ema,
            "--keep-epochs",
            "--out",
            s(out),
        ];
        argv.extend_from_slice(extra);
        srsnet(&argv)
    };
    let train = |ema: &str, out: &Path| train_with(ema, out, &[]);
    let (code, err) = train("0.9", &out);
    assert_eq!(code, 0, "{err}");

    // Every validated epoch is a weights file of its own, recorded as that epoch's.
    let info = |p: &Path| srsnet::model::weights_file::WeightsFile::open(p).unwrap().info;
    let epoch = |n: usize| out.join(format!("srsnet-epoch{n}.safetensors"));
    for n in [1, 2] {
        assert_eq!(info(&epoch(n))["seg_kept_epoch"], n, "{}", info(&epoch(n)));
    }
    assert_ne!(
        tensors(&epoch(1)),
        tensors(&epoch(2)),
        "two epochs of training, two nets"
    );
    // The shipped file is the kept epoch's, and records the average it was made with.
    let shipped = info(&out.join("srsnet.safetensors"));
    assert_eq!(shipped["ema"], 0.9, "{shipped}");
    let best = shipped["seg_kept_epoch"].as_u64().unwrap() as usize;
    assert_eq!(tensors(&out.join("srsnet.safetensors")), tensors(&epoch(best)));

    // A run spanning sessions exports what it has kept so far, without training on: the same
    // command with --resume --export-kept writes the same nets and leaves the checkpoint be.
    let exported = [1, 2].map(|n| tensors(&epoch(n)));
    let last = out.join("seg-last.ckpt.safetensors");
    let checkpoint = std::fs::read(&last).unwrap();
    for n in [1, 2] {
        std::fs::remove_file(epoch(n)).unwrap();
    }
    let (code, err) = train_with("0.9", &out, &["--resume", "--export-kept"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!([1, 2].map(|n| tensors(&epoch(n))), exported);
    assert_eq!(std::fs::read(&last).unwrap(), checkpoint, "no training step was taken");
    // Without a run to resume, or without --resume, it says so.
    let (code, err) = train_with("0.9", &d.join("none"), &["--resume", "--export-kept"]);
    assert_ne!(code, 0);
    assert!(err.contains("no seg checkpoint"), "{err}");
    let (code, err) = train_with("0.9", &out, &["--export-kept"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--resume"), "{err}");

    // A decay outside (0, 1) is refused before anything runs.
    for bad in ["1", "0", "1.5"] {
        let (code, err) = train(bad, &d.join(format!("bad{bad}")));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("--ema") && err.contains("strictly between 0 and 1"),
            "{err}"
        );
    }
}
