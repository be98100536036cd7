//! Masks derived from point annotations against the exact masks of synthetic targets
//! (Gaussian spots of 1–20 px over cloud and ground clutter, with sensor noise).

use srsnet::dataset::labels::{derive_mask, Annotation, LabelRule};
use srsnet::synthetic::{Scene, SceneConfig};

/// Dataset-level IoU of derived vs exact masks, and (derived, skipped) counts.
fn score(contrast: f32, offset: f64) -> (f64, usize, usize) {
    let (mut inter, mut union, mut derived, mut skipped) = (0usize, 0usize, 0, 0);
    for seed in 0..12u64 {
        let cfg = SceneConfig {
            width: 192,
            height: 160,
            targets: 4,
            seed,
            contrast,
            noise: 0.01,
        };
        let mut scene = Scene::new(cfg);
        for frame in [0usize, 7, 19] {
            let (img, truth, masks) = scene.frame_with_masks(frame);
            for (t, exact) in truth.iter().zip(&masks) {
                match derive_mask(
                    &img,
                    192,
                    160,
                    Annotation::Point(t.x + offset, t.y),
                    &LabelRule::default(),
                ) {
                    Ok(m) => {
                        derived += 1;
                        inter += m.iter().filter(|i| exact.contains(i)).count();
                        union += m.len() + exact.len() - m.iter().filter(|i| exact.contains(i)).count();
                    }
                    Err(e) => {
                        if std::env::var("LABEL_DEBUG").is_ok() {
                            eprintln!("skip: {e} (exact area {})", exact.len());
                        }
                        skipped += 1
                    }
                }
            }
        }
    }
    (inter as f64 / union.max(1) as f64, derived, skipped)
}

#[test]
fn derived_masks_match_the_exact_masks_of_synthetic_targets() {
    let (iou, derived, skipped) = score(0.25, 0.0);
    eprintln!("contrast 0.25, exact points: IoU {iou:.3}, {derived} derived, {skipped} skipped");
    // Measured: IoU 0.849, 143 of 144 derived.
    assert!(iou >= 0.82, "IoU {iou}");
    assert!(
        skipped * 20 <= derived + skipped,
        "{skipped} of {} skipped",
        derived + skipped
    );
    // Annotations a pixel off (as hand-clicked centroids are) change little.
    let (iou_off, derived_off, _) = score(0.25, 1.0);
    eprintln!("contrast 0.25, points 1 px off: IoU {iou_off:.3}, {derived_off} derived");
    // Measured: IoU 0.847.
    assert!(iou_off >= 0.82, "IoU {iou_off}");
    // Dim targets (contrast 0.06 over ground texture of σ ≈ 0.02): about half are below the
    // rule's 3 σ and are skipped, not guessed. Measured: IoU 0.447, 72 of 144 derived.
    let (iou_dim, derived_dim, skipped_dim) = score(0.06, 0.0);
    eprintln!("contrast 0.06: IoU {iou_dim:.3}, {derived_dim} derived, {skipped_dim} skipped");
    assert!(iou_dim >= 0.40, "IoU {iou_dim}");
    assert!(
        derived_dim * 10 >= 4 * (derived_dim + skipped_dim),
        "{derived_dim} derived, {skipped_dim} skipped"
    );
}

fn srsnet(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_srsnet"))
        .args(args)
        .output()
        .expect("run srsnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `srsnet label --source SEQ --out OUT EXTRA...`.
fn label(seq: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "label",
        "--source",
        seq.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    srsnet(&args)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("srsnet-labels-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn srsnet_label_writes_masks_and_overlays_and_counts_skips() {
    let d = tmp("cli");
    let seq = d.join("seq");
    let (code, err) = srsnet(&[
        "synth",
        "--out",
        seq.to_str().unwrap(),
        "--count",
        "3",
        "--size",
        "96x80",
        "--targets",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    // One annotation more: a point on flat sky with no target there is skipped, not guessed.
    let mut csv = std::fs::read_to_string(seq.join("centroids.csv")).unwrap();
    csv.push_str("synthetic_0001.png,5,5\n");
    std::fs::write(seq.join("centroids.csv"), csv).unwrap();
    let out = d.join("out");
    let (code, err) = label(&seq, &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("derived 6 of 7 target masks in 3 frames (1 skipped"),
        "{err}"
    );
    assert!(err.contains("synthetic_0001.png target 3 (point 5.0,5.0)"), "{err}");
    for i in 0..3 {
        let m = image::open(out.join(format!("masks/synthetic_{i:04}.png")))
            .unwrap()
            .to_luma8();
        assert_eq!(m.dimensions(), (96, 80));
        assert!(m.pixels().any(|p| p.0[0] == 255), "frame {i} has target pixels");
        assert!(out.join(format!("overlays/synthetic_{i:04}.png")).exists());
    }
}

#[test]
fn srsnet_label_names_bad_annotation_lines_and_missing_frames() {
    let d = tmp("bad");
    let seq = d.join("seq");
    let (code, _) = srsnet(&[
        "synth",
        "--out",
        seq.to_str().unwrap(),
        "--count",
        "2",
        "--size",
        "64x64",
    ]);
    assert_eq!(code, 0);
    let out = d.join("out");
    std::fs::write(
        seq.join("centroids.csv"),
        "frame,x,y\nsynthetic_0000.png,1,2\nsynthetic_0001.png,x,2\n",
    )
    .unwrap();
    let (code, err) = label(&seq, &out, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("centroids.csv") && err.contains("line 3"), "{err}");
    std::fs::write(seq.join("centroids.csv"), "frame,x,y\nsynthetic_0009.png,1,2\n").unwrap();
    let (code, err) = label(&seq, &out, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("line 2") && err.contains("not in"), "{err}");
    std::fs::remove_file(seq.join("centroids.csv")).unwrap();
    std::fs::write(seq.join("boxes.csv"), "frame,x0,y0,x1,y1\nsynthetic_0000.png,9,9,3,3\n").unwrap();
    let (code, err) = label(&seq, &out, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("boxes.csv") && err.contains("line 2"), "{err}");
    // A window below the rule's range is refused when parsed.
    std::fs::write(
        seq.join("boxes.csv"),
        "frame,x0,y0,x1,y1
",
    )
    .unwrap();
    let (code, err) = label(&seq, &out, &["--window", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains("--window"), "{err}");
}
