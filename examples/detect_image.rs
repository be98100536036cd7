//! Using srsnet as a library: load a weights file, segment one image, print its targets.
//!
//! `cargo run --release --example detect_image -- models/srsnet-lite.safetensors IMAGE`

use candle_core::Device;
use srsnet::image_io::read_frame;
use srsnet::infer::Detector;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let (Some(weights), Some(image)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: detect_image WEIGHTS IMAGE");
    };
    let detector = Detector::from_file(&weights, &Device::Cpu)?;
    let frame = read_frame(&image, detector.channels())?;
    // The weights' own operating point (threshold and grow threshold), as `srsnet infer` uses.
    let det = detector.detect(&frame, detector.rule)?;
    for t in &det.targets {
        println!(
            "target {}: centroid ({:.2}, {:.2}), area {} px, peak {:.3}",
            t.id, t.x, t.y, t.area, t.peak
        );
    }
    Ok(())
}
