//! The project weights file: importing reference checkpoints, f16 storage parity, export
//! round trips, and the errors a bad weights file gets.

mod common;
use candle_core::{DType, Device};
use common::*;
use srsnet::cli::StoreDtype;
use srsnet::infer::TargetRule;
use srsnet::model::weights_file::WeightsFile;
use std::path::{Path, PathBuf};

fn store_dtype(d: DType) -> StoreDtype {
    if d == DType::F16 {
        StoreDtype::F16
    } else {
        StoreDtype::F32
    }
}

/// `srsnet import` through its arguments struct.
fn import(recon: &Path, seg: &Path, preset: &str, out: &Path, dtype: DType) -> anyhow::Result<()> {
    srsnet::cli::import::run(srsnet::cli::import::ImportArgs {
        recon: recon.into(),
        seg: seg.into(),
        preset: preset.into(),
        out: out.into(),
        dtype: store_dtype(dtype),
    })
}

/// `srsnet export` through its arguments struct.
fn export(
    weights: &Path,
    out: &Path,
    dtype: DType,
    reference_dir: Option<&Path>,
    threshold: Option<f32>,
) -> anyhow::Result<()> {
    export_rule(weights, out, dtype, reference_dir, threshold, None)
}

/// `srsnet export` with `--grow` too.
fn export_rule(
    weights: &Path,
    out: &Path,
    dtype: DType,
    reference_dir: Option<&Path>,
    threshold: Option<f32>,
    grow: Option<&str>,
) -> anyhow::Result<()> {
    srsnet::cli::export::run(srsnet::cli::export::ExportArgs {
        weights: weights.into(),
        out: out.into(),
        dtype: store_dtype(dtype),
        reference_dir: reference_dir.map(Path::to_path_buf),
        threshold,
        grow: grow.map(|g| srsnet::cli::parse_grow(g).unwrap()),
    })
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-wf-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The tiny reference checkpoints imported as `name` (a weights file of ours) in `dtype`.
fn tiny_weights(name: &str, dtype: DType) -> PathBuf {
    let out = tmp(name);
    let cfg = tiny_config_file();
    import(
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        cfg.to_str().unwrap(),
        &out,
        dtype,
    )
    .unwrap();
    out
}

/// The tiny config as a JSON file. Tests run in parallel threads and each rewrites it, so it
/// is written under a name of its own and renamed into place: a reader never sees it half
/// written (the race that once failed `a_weights_file_whose_grow_threshold_is_bad_is_refused_on_open`).
fn tiny_config_file() -> PathBuf {
    let cfg = tiny_config();
    let p = tmp("tiny.json");
    let part = tmp(&format!("tiny.json.{:?}", std::thread::current().id()));
    std::fs::write(&part, serde_json::to_string(&cfg).unwrap()).unwrap();
    std::fs::rename(&part, &p).unwrap();
    p
}

/// Imports the reference checkpoints in f16 and checks logits against the f32 reference:
/// f16 rounding of the weights (rel. 2^-11 per weight) through ~100 layers allows 2e-2·max(1, max|ref|),
/// and the mask (sign of the logits) must agree on at least 99.9 % of pixels.
fn check_f16(recon: &Path, seg: &Path, io: &Path, preset: &str, label: &str) {
    let out = tmp(&format!("{label}_f16.safetensors"));
    import(recon, seg, preset, &out, DType::F16).unwrap();
    let file = WeightsFile::open(&out).unwrap();
    let model = file.load_model(&Device::Cpu, DType::F32, true).unwrap();
    let logits = model.forward(&io_tensor(io, "input")).unwrap();
    let reference = io_tensor(io, "seg_logits");
    assert_close(&format!("{label} f16-stored seg_logits"), &logits, &reference, 2e-2);
    let agree = sign_agreement(&logits, &reference);
    eprintln!("{label} f16 mask agreement {:.5}%", agree * 100.0);
    assert!(agree >= 0.999, "{label}: mask agreement {agree}");
    // The CPU plan, built from the same f16-stored model, within the same bounds.
    let input = io_tensor(io, "input");
    let (b, _, h, w) = input.dims4().unwrap();
    let pool = srsnet::engine::ThreadPool::new(2).unwrap();
    let mut plan = srsnet::engine::Plan::build(&model, h, w, srsnet::engine::Isa::best()).unwrap();
    let mut planned = Vec::with_capacity(b * h * w);
    for i in 0..b {
        let x = input.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![0.0; h * w];
        plan.run(&pool, &x, &mut out).unwrap();
        planned.extend(out);
    }
    let planned = candle_core::Tensor::from_vec(planned, reference.dims(), &Device::Cpu).unwrap();
    assert_close(
        &format!("{label} f16-stored plan seg_logits"),
        &planned,
        &reference,
        2e-2,
    );
    let agree = sign_agreement(&planned, &reference);
    eprintln!("{label} f16 plan mask agreement {:.5}%", agree * 100.0);
    assert!(agree >= 0.999, "{label}: plan mask agreement {agree}");
}

#[test]
fn tiny_f16_weights_keep_parity() {
    let cfg = tiny_config_file();
    check_f16(
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        &fixture("tiny_io.safetensors"),
        cfg.to_str().unwrap(),
        "tiny",
    );
}

#[test]
fn full_f16_weights_keep_parity() {
    let Some(dir) = shared("fixtures/parity") else { return };
    check_f16(
        &dir.join("full_recon.safetensors"),
        &dir.join("full_seg.safetensors"),
        &dir.join("full_io.safetensors"),
        "official",
        "full",
    );
}

#[test]
fn import_records_reference_preprocessing_and_drops_unused_tensors() {
    let out = tmp("tiny_f32.safetensors");
    let cfg = tiny_config_file();
    import(
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        cfg.to_str().unwrap(),
        &out,
        DType::F32,
    )
    .unwrap();
    let file = WeightsFile::open(&out).unwrap();
    assert_eq!(file.preprocess.post_scale, 1.0 / 255.0);
    assert_eq!(file.preprocess.mean, vec![0.485, 0.456, 0.406]);
    let names = file.store.names();
    assert!(names.iter().all(|n| n.starts_with("recon.") || n.starts_with("seg.")));
    assert!(
        !names.iter().any(|n| n.starts_with("seg.IPATR")),
        "S's IPATR is never called"
    );
    assert!(!names
        .iter()
        .any(|n| n.contains("num_batches_tracked") || n.contains(".tr.") || n.contains("conv0_3_1x1")));
    assert!(
        names.iter().any(|n| n.starts_with("recon.IPATR0.conv3")),
        "R's IPATR is used"
    );
}

#[test]
fn export_round_trip_to_reference_names_is_exact_in_f32() {
    let cfg = tiny_config_file();
    let ours = tiny_weights("rt_a.safetensors", DType::F32);
    let dir = tmp("rt_ref");
    export(&ours, &tmp("rt_b.safetensors"), DType::F32, Some(&dir), Some(0.7)).unwrap();
    // The recorded operating point is what inference uses by default.
    let det = srsnet::infer::Detector::from_file(&tmp("rt_b.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(det.rule, TargetRule::plain(0.7));
    assert!(srsnet::cli::parse_threshold("1.5").is_err());
    // Exporting onto the input itself is refused and leaves it intact.
    let e = format!("{:#}", export(&ours, &ours, DType::F16, None, None).unwrap_err());
    assert!(e.contains("refusing to overwrite"), "{e}");
    assert!(WeightsFile::open(&ours).is_ok());
    let again = tmp("rt_c.safetensors");
    import(
        &dir.join("recon.safetensors"),
        &dir.join("seg.safetensors"),
        cfg.to_str().unwrap(),
        &again,
        DType::F32,
    )
    .unwrap();
    let a = WeightsFile::open(&ours).unwrap().tensors(DType::F32).unwrap();
    let c = WeightsFile::open(&again).unwrap().tensors(DType::F32).unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), c.keys().collect::<Vec<_>>());
    for (n, t) in &a {
        assert_eq!(max_abs_diff(t, &c[n]), 0.0, "{n}");
    }
}

#[test]
fn export_records_a_grow_threshold_that_inference_uses_and_refuses_one_above_the_threshold() {
    let ours = tiny_weights("grow_a.safetensors", DType::F16);
    let grown = tmp("grow_b.safetensors");
    export_rule(&ours, &grown, DType::F16, None, Some(0.9), Some("0.6")).unwrap();
    let rule = |p: &Path| srsnet::infer::Detector::from_file(p, &Device::Cpu).unwrap().rule;
    assert_eq!(rule(&grown), TargetRule::new(0.9, Some(0.6)).unwrap());
    let info = WeightsFile::open(&grown).unwrap().info;
    assert_eq!(
        (info["threshold"].as_f64(), info["grow"].as_f64()),
        (Some(0.9), Some(0.6))
    );
    // A new threshold alone keeps the recorded grow; `none` removes it.
    let moved = tmp("grow_c.safetensors");
    export_rule(&grown, &moved, DType::F16, None, Some(0.8), None).unwrap();
    assert_eq!(rule(&moved), TargetRule::new(0.8, Some(0.6)).unwrap());
    let plain = tmp("grow_d.safetensors");
    export_rule(&grown, &plain, DType::F16, None, None, Some("none")).unwrap();
    assert_eq!(rule(&plain), TargetRule::plain(0.9));
    // A grow above the threshold is refused, naming both, and writes nothing.
    let refused = tmp("grow_e.safetensors");
    let e = err_of(export_rule(&ours, &refused, DType::F16, None, Some(0.5), Some("0.7")));
    assert!(e.contains("grow threshold 0.7 is above the threshold 0.5"), "{e}");
    assert!(!refused.exists());
    let e = err_of(export_rule(&grown, &refused, DType::F16, None, Some(0.5), None));
    assert!(e.contains("--threshold 0.5") && e.contains("--grow none"), "{e}");
    assert!(srsnet::cli::parse_grow("1.2").is_err() && srsnet::cli::parse_grow("x").is_err());
}

#[test]
fn a_weights_file_whose_grow_threshold_is_bad_is_refused_on_open() {
    let ours = tiny_weights("bad_grow_src.safetensors", DType::F32);
    let src = WeightsFile::open(&ours).unwrap();
    let tensors = src.tensors(DType::F32).unwrap();
    for (info, expected) in [
        (
            serde_json::json!({ "threshold": 0.5, "grow": 0.8 }),
            "grow threshold 0.8 is above the threshold 0.5",
        ),
        (
            serde_json::json!({ "threshold": 0.5, "grow": "high" }),
            "operating point `grow` is \"high\"",
        ),
        (serde_json::json!({ "grow": 1.5 }), "operating point `grow` is 1.5"),
    ] {
        let p = tmp("bad_grow.safetensors");
        let _ = std::fs::remove_file(&p);
        srsnet::model::weights_file::write(&p, &tensors, &src.config, &src.preprocess, &info, DType::F32).unwrap();
        let e = err_of(WeightsFile::open(&p));
        assert!(
            e.contains("bad_grow.safetensors") && e.contains(expected),
            "{info}: {e}"
        );
    }
}

fn err_of(r: anyhow::Result<impl Sized>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn missing_tensor_error_names_file_and_tensor() {
    // A reconstruction checkpoint with one tensor the network uses removed.
    let store = srsnet::model::WeightStore::open(fixture("tiny_recon.safetensors")).unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    for n in store
        .names()
        .into_iter()
        .filter(|n| n != "IPATR1.conv2.bias" && !n.contains("num_batches"))
    {
        tensors.insert(n.clone(), store.get_any_shape(&n, DType::F32, &Device::Cpu).unwrap());
    }
    let broken = tmp("recon_missing.safetensors");
    srsnet::model::weights_file::write_plain(&broken, &tensors, DType::F32).unwrap();
    let cfg = tiny_config_file();
    let e = err_of(import(
        &broken,
        &fixture("tiny_seg.safetensors"),
        cfg.to_str().unwrap(),
        &tmp("x.safetensors"),
        DType::F16,
    ));
    assert!(
        e.contains("recon_missing.safetensors") && e.contains("`IPATR1.conv2.bias` is missing"),
        "{e}"
    );
}

#[test]
fn wrong_shape_error_says_expected_and_found() {
    // The tiny checkpoints under the official preset: shapes differ.
    let e = err_of(import(
        &fixture("tiny_recon.safetensors"),
        &fixture("tiny_seg.safetensors"),
        "official",
        &tmp("y.safetensors"),
        DType::F16,
    ));
    assert!(
        e.contains("tiny_recon.safetensors") && e.contains("conv1.0.weight") && e.contains("expected"),
        "{e}"
    );
}

#[test]
fn truncated_and_foreign_files_are_rejected_with_their_path() {
    let bytes = std::fs::read(fixture("tiny_seg.safetensors")).unwrap();
    let cut = tmp("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(WeightsFile::open(&cut));
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    let junk = tmp("junk.safetensors");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(err_of(WeightsFile::open(&junk)).contains("junk.safetensors"));

    // A reference checkpoint is valid safetensors but not a project file.
    let e = err_of(WeightsFile::open(&fixture("tiny_seg.safetensors")));
    assert!(e.contains("srsnet import"), "{e}");

    let e = err_of(WeightsFile::open(Path::new("/nonexistent/w.safetensors")));
    assert!(e.contains("/nonexistent/w.safetensors"), "{e}");
}

#[test]
fn integer_tensor_dtype_is_rejected_by_name() {
    let e = srsnet::model::WeightStore::open(fixture("tiny_seg.safetensors"))
        .unwrap()
        .get_any_shape("conv1.1.num_batches_tracked", DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("num_batches_tracked") && e.contains("I64"), "{e}");
}
