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
