//! What a motion model's temporal plane holds on real sequences (models/README.md, "The
//! temporal input"): per sequence, the plane's noise (a robust σ of every pixel's value) and
//! the value at each annotated target (the largest in its 3×3), so that the training crops'
//! simulated planes (`train::motion`) can be drawn at the level real sequences show.
//!
//! cargo run --release --example motion_plane_stats -- LAG REACH SEQUENCE_DIR...
use anyhow::{bail, Context, Result};
use srsnet::dataset::sequence::Sequence;
use srsnet::image_io::read_frame;
use srsnet::robust::{median, sigma_from_deviations};
use srsnet::temporal::{attach_in_order, MotionInput};
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: motion_plane_stats LAG REACH SEQUENCE_DIR...");
    }
    let input = MotionInput {
        lag: args[0].parse().context("LAG")?,
        reach: args[1].parse().context("REACH")?,
    };
    input.validate()?;
    println!("sequence\tframes\tnoise_sigma_median\ttarget_value_median\ttarget_value_p10\ttargets");
    for dir in &args[2..] {
        let seq = Sequence::open(Path::new(dir))?;
        let frames = seq
            .frames
            .iter()
            .map(|f| read_frame(&f.path, 1))
            .collect::<Result<Vec<_>>>()?;
        let planes = attach_in_order(&frames, input);
        let (mut sigmas, mut values) = (Vec::new(), Vec::new());
        for (f, p) in seq.frames.iter().zip(&planes).skip(input.lag) {
            let m = p.plane(1);
            let mut dev: Vec<f32> = m.iter().map(|v| v.abs()).collect();
            sigmas.push(sigma_from_deviations(&mut dev));
            for &(x, y) in f.truth.as_deref().unwrap_or_default() {
                let (cx, cy) = (x.round() as i64, y.round() as i64);
                let mut best = f32::MIN;
                for yy in cy - 1..=cy + 1 {
                    for xx in cx - 1..=cx + 1 {
                        if (0..p.width as i64).contains(&xx) && (0..p.height as i64).contains(&yy) {
                            best = best.max(m[yy as usize * p.width + xx as usize]);
                        }
                    }
                }
                values.push(best);
            }
        }
        let n = values.len();
        values.sort_by(f32::total_cmp);
        let p10 = values.get(n / 10).copied().unwrap_or(f32::NAN);
        println!(
            "{dir}\t{}\t{:.4}\t{:.4}\t{p10:.4}\t{n}",
            sigmas.len(),
            median(&mut sigmas),
            median(&mut values)
        );
    }
    Ok(())
}
