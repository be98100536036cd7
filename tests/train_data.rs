//! Training data loading: a mask whose size differs from its image, a missing mask and an
//! unreadable image are reported by name and skipped; the good pairs are kept.

use srsnet::dataset::pairs::PairLayout;
use srsnet::train::data::load_pairs;

#[test]
fn bad_pairs_are_reported_by_name_and_skipped() {
    let root = std::env::temp_dir().join(format!("srsnet-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let layout = PairLayout::sirst(&root);
    std::fs::create_dir_all(&layout.images).unwrap();
    std::fs::create_dir_all(&layout.masks).unwrap();
    let gray = |w, h, v| image::GrayImage::from_pixel(w, h, image::Luma([v]));
    gray(16, 12, 90).save(layout.image_path("good")).unwrap();
    let mut m = gray(16, 12, 0);
    m.put_pixel(3, 4, image::Luma([255]));
    m.put_pixel(5, 4, image::Luma([100])); // ≤ 127: background
    m.save(layout.mask_path("good")).unwrap();
    gray(16, 12, 90).save(layout.image_path("badsize")).unwrap();
    gray(8, 8, 0).save(layout.mask_path("badsize")).unwrap();
    gray(16, 12, 90).save(layout.image_path("nomask")).unwrap();
    std::fs::write(layout.image_path("corrupt"), b"junk").unwrap();
    gray(16, 12, 0).save(layout.mask_path("corrupt")).unwrap();

    let names = layout.names(None).unwrap();
    assert_eq!(names, vec!["badsize", "corrupt", "good", "nomask"]);
    let (samples, skipped) = load_pairs(&layout, &names, 1);
    assert_eq!(samples.len(), 1);
    let mask = samples[0].mask.as_ref().unwrap();
    assert_eq!(mask.iter().filter(|&&v| v == 1.0).count(), 1, "binarised at > 127");
    let reasons: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.name, s.reason)).collect();
    assert_eq!(skipped.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].starts_with("badsize") && reasons[0].contains("8×8") && reasons[0].contains("16×12"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].starts_with("corrupt") && reasons[1].contains("corrupt.png"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].starts_with("nomask") && reasons[2].contains("nomask_pixels0.png"),
        "{}",
        reasons[2]
    );
}
