//! The grid behind the motion gate's defaults (models/README.md, "A motion gate for
//! sequences"): hits and false targets on centroid-annotated sequences for every
//! (frames back, minimum change) pair, with the network run once per frame.
//!
//! cargo run --release --example motion_gate_grid -- WEIGHTS THRESHOLD SEQUENCE_DIR...
//!
//! It scores exactly as `srsnet eval --sequence DIR --threshold T --motion-gate K
//! --motion-min R --motion-register 8` would, one setting at a time.
use anyhow::{bail, Context, Result};
use srsnet::dataset::sequence::Sequence;
use srsnet::detect::Target;
use srsnet::eval::metrics::MetricAccumulator;
use srsnet::image_io::read_frame;
use srsnet::infer::{Segmenter, TargetRule};
use srsnet::stream::motion::MotionGate;
use srsnet::stream::register::SceneTracker;
use std::path::Path;

const FRAMES_BACK: [usize; 4] = [2, 3, 5, 8];
const MIN_CHANGE: [f32; 3] = [0.3, 0.5, 0.7];
const REGISTER: usize = 8;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: motion_gate_grid WEIGHTS THRESHOLD SEQUENCE_DIR...");
    }
    let seg = Segmenter::new(
        "net",
        Path::new(&args[0]),
        &candle_core::Device::Cpu,
        Default::default(),
    )?;
    let rule = TargetRule::plain(args[1].parse().context("THRESHOLD")?);
    println!("sequence\tgate\tmin\thits\ttargets\tfalse_targets\tframes");
    for dir in &args[2..] {
        let seq = Sequence::open(Path::new(dir))?;
        let settings: Vec<Option<(usize, f32)>> = std::iter::once(None)
            .chain(
                FRAMES_BACK
                    .iter()
                    .flat_map(|&k| MIN_CHANGE.iter().map(move |&r| Some((k, r)))),
            )
            .collect();
        let mut gates: Vec<Option<MotionGate>> = settings
            .iter()
            .map(|s| s.map(|(k, r)| MotionGate::new(k, r, REGISTER)).transpose())
            .collect::<Result<_>>()?;
        let mut accs = vec![MetricAccumulator::default(); settings.len()];
        // One registration per frame for every setting's gate, as `eval` does.
        let mut scene = SceneTracker::new(REGISTER);
        for f in &seq.frames {
            let frame = read_frame(&f.path, seg.channels())?;
            let det = seg.detect(&frame, rule)?;
            let step = scene.step(frame.plane(0), frame.width, frame.height);
            let truth = f.truth.clone().unwrap_or_default();
            for (g, acc) in gates.iter_mut().zip(&mut accs) {
                let kept = match g {
                    Some(g) => g.filter(&frame, step, det.targets.clone()),
                    None => det.targets.clone(),
                };
                let blobs: Vec<_> = kept.iter().map(Target::blob).collect();
                acc.add_blobs(&blobs, &truth, frame.width, frame.height);
            }
        }
        for (s, acc) in settings.iter().zip(&accs) {
            let m = acc.finish();
            let (k, r) = s.map_or(("none".to_string(), "-".to_string()), |(k, r)| {
                (k.to_string(), r.to_string())
            });
            println!(
                "{dir}\t{k}\t{r}\t{}\t{}\t{}\t{}",
                m.hits, m.targets, m.false_targets, m.images
            );
        }
    }
    Ok(())
}
