//! Our metrics reproduce BasicIRSTD's evaluator on the 24 prediction/ground-truth pairs in
//! `../shared/fixtures/metrics` (within 1e-9: both are exact counts, ratios in f64).

mod common;
use srsnet::eval::metrics::MetricAccumulator;

fn read_mask(p: &std::path::Path) -> (Vec<bool>, usize, usize) {
    let img = image::open(p).unwrap().to_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    (img.into_raw().into_iter().map(|v| v > 127).collect(), w, h)
}

#[test]
fn reproduces_basicirstd_on_the_fixture_pairs() {
    let Some(dir) = common::shared("fixtures/metrics") else {
        return;
    };
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut acc = MetricAccumulator::default();
    for k in 0..24 {
        let (pred, w, h) = read_mask(&dir.join(format!("pred_{k:02}.png")));
        let (gt, w2, h2) = read_mask(&dir.join(format!("gt_{k:02}.png")));
        assert_eq!((w, h), (w2, h2));
        acc.add_mask(&pred, &gt, w, h);
    }
    let m = acc.finish();
    for (name, ours) in [
        ("iou", m.iou),
        ("niou", m.niou),
        ("f1", m.f1),
        ("pd", m.pd),
        ("fa", m.fa),
    ] {
        let want = expected[name].as_f64().unwrap();
        eprintln!("{name}: ours {ours:.12} expected {want:.12}");
        assert!((ours - want).abs() <= 1e-9, "{name}: ours {ours} expected {want}");
    }
    assert_eq!(m.targets as u64, expected["targets"].as_u64().unwrap());
    assert_eq!(m.hits as u64, expected["hits"].as_u64().unwrap());
}
