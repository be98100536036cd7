//! `srsnet eval`: the field's metrics for a model on a labelled set, for mask files made by
//! anything else, or (Pd, Fa, false targets per frame) for centroid-annotated sequences.
//! Every listed input is scored or counted as failed; nothing is silently left out.

use super::{default_weights, parse_grow, parse_threshold, target_rule, Grow};
use crate::dataset::pairs::{read_mask, read_pair, PairLayout};
use crate::dataset::sequence::Sequence;
use crate::dataset::Truth;
use crate::detect::Target;
use crate::device::DeviceSpec;
use crate::eval::metrics::{MetricAccumulator, Metrics, MATCH_DISTANCE};
use crate::image_io::{read_frame, Frame};
use crate::infer::{Segmenter, TargetRule};
use crate::plot;
use crate::progress::Progress;
use crate::stream::motion::MotionGate;
use crate::temporal::MotionPlanes;
use crate::train::recipe;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Arguments of `srsnet eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Weights file (default: the shipped weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `net` (SRSNet weights) or `tophat[:SE:K[:MIN_CONTRAST]]` (the training-free baseline).
    #[arg(long, default_value = "net")]
    pub model: String,
    /// Labelled set in the SIRST layout (images/, masks/NAME_pixels0.png).
    #[arg(long, conflicts_with_all = ["pred", "sequence"])]
    pub data: Option<PathBuf>,
    /// Split file of NAMEs (default: every image).
    #[arg(long, requires = "data")]
    pub split: Option<PathBuf>,
    /// Folder of prediction masks to score against --gt.
    #[arg(long, requires = "gt", conflicts_with = "sequence")]
    pub pred: Option<PathBuf>,
    /// Folder of ground-truth masks for --pred.
    #[arg(long, requires = "pred")]
    pub gt: Option<PathBuf>,
    /// Suffix of ground-truth mask names (NAME{suffix}.png).
    #[arg(long, default_value = "")]
    pub gt_suffix: String,
    /// A sequence folder with frames/ and centroids.csv (Pd/Fa by the 3-pixel centroid rule).
    #[arg(long)]
    pub sequence: Option<PathBuf>,
    /// A folder of target-free frames: false targets per frame and Fa.
    #[arg(long, conflicts_with_all = ["data", "pred", "sequence"])]
    pub negatives: Option<PathBuf>,
    /// A recipe file: score each of its validation sets, one table row per set (and threshold).
    #[arg(long, conflicts_with_all = ["data", "pred", "sequence", "negatives"])]
    pub recipe: Option<PathBuf>,
    /// With --recipe: score its training sets (all but the unlabelled ones) instead of its
    /// validation sets, to see how well the weights fit what they were trained on. For
    /// diagnosis only: never choose a threshold or a checkpoint on these rows.
    #[arg(long, requires = "recipe")]
    pub training_sets: bool,
    /// Probability threshold (default: the weights' recorded operating point, else 0.5).
    #[arg(long, value_parser = parse_threshold, conflicts_with = "sweep")]
    pub threshold: Option<f32>,
    /// Score several thresholds in one pass (comma-separated), e.g. 0.5,0.7,0.9.
    #[arg(long, value_delimiter = ',', value_parser = parse_threshold)]
    pub sweep: Vec<f32>,
    /// Grow each target from its pixels above the threshold over its connected pixels above
    /// this (hysteresis), or `none` (default: the weights' recorded grow threshold, if any).
    /// With --sweep, every threshold swept must be at least this.
    #[arg(long, value_parser = parse_grow)]
    pub grow: Option<Grow>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// CPU engine options.
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw the --sweep trade-off into this PNG: Pd against Fa, IoU and false targets per frame
    /// against the threshold, with the operating point marked.
    #[arg(long, requires = "sweep")]
    pub plot: Option<PathBuf>,
    /// Score sequences (--sequence, a recipe's sequence sets) after `run`'s motion gate. Still
    /// images and target-free frames are not sequences and are scored as they are.
    #[command(flatten)]
    pub motion: super::MotionGateArgs,
    /// Score a motion model's sequences frame by frame as still images (zero motion planes):
    /// its single-frame behaviour, to see what the plane adds. Refused for other models.
    #[arg(long)]
    pub still: bool,
}

/// How a sequence's frames, scored in order, are seen.
#[derive(Debug, Clone, Copy)]
pub struct InOrder<'a> {
    /// The motion gate the detections pass, if any (a copy per rule).
    pub gate: Option<&'a MotionGate>,
    /// Whether a motion model sees each frame's motion plane (else a zero plane: `--still`).
    pub motion_planes: bool,
}

/// Runs `srsnet eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    if let (Some(pred), Some(gt)) = (&args.pred, &args.gt) {
        let (m, failed) = eval_masks(pred, gt, &args.gt_suffix)?;
        print_rows(
            &format!("masks {}", pred.display()),
            &[(None, m)],
            false,
            args.json,
            failed,
        );
        return finish(&m, failed);
    }
    // Checked here too: clap drops `requires` when --negatives (which conflicts with
    // --recipe) is given, and the negatives would then be scored under a training label.
    if args.training_sets && args.recipe.is_none() {
        bail!("--training-sets scores the training sets of a recipe: give --recipe");
    }
    let seg = Segmenter::new(
        &args.model,
        &args.weights.clone().unwrap_or_else(default_weights),
        &args.device.open()?,
        args.engine.options(),
    )?;
    let gate = args.motion.gate()?;
    if args.still && seg.motion().is_none() {
        bail!(
            "--still zeroes a motion model's motion planes; {} takes none",
            seg.name()
        );
    }
    let recorded = seg.default_rule();
    let rules = if args.sweep.is_empty() {
        vec![target_rule(args.threshold, args.grow, recorded)?]
    } else {
        let rules: Result<Vec<_>> = args
            .sweep
            .iter()
            .map(|&t| target_rule(Some(t), args.grow, recorded))
            .collect();
        rules?
    };
    let sets = match (&args.recipe, &args.negatives) {
        (Some(path), _) if args.training_sets => Some(recipe::Recipe::from_file(path)?.training_as_validation()?),
        (Some(path), _) => Some(recipe::Recipe::from_file(path)?),
        (None, Some(dir)) => Some(recipe::Recipe {
            train: vec![],
            validation: vec![recipe::DatasetSpec::Negatives {
                dir: dir.clone(),
                list: None,
                exclude: None,
                weight: 1.0,
            }],
        }),
        _ => None,
    };
    let plot = args.plot.as_deref().map(|p| Plot {
        path: p,
        operating: recorded.threshold,
        grow: rules[0].grow,
    });
    if let Some(p) = &plot {
        let inputs = [&args.weights, &args.recipe, &args.data, &args.sequence, &args.negatives];
        super::refuse_overwrite(inputs.into_iter().flatten().map(PathBuf::as_path), p.path)?;
    }
    if let Some(r) = sets {
        // Training rows are named apart: a split's name is not in a set's name, so SIRST's
        // training and validation rows would otherwise read alike.
        let prefix = if args.training_sets { "trained-on " } else { "" };
        let in_order = InOrder {
            gate: gate.as_ref(),
            motion_planes: !args.still,
        };
        return eval_sets(&seg, &r, &rules, in_order, args.json, plot.as_ref(), prefix);
    }
    let (rows, failed, points_only) = match (&args.data, &args.sequence) {
        (Some(root), _) => {
            let (rows, failed) = sweep_model(&seg, &PairLayout::sirst(root), args.split.as_deref(), &rules)?;
            (rows, failed, false)
        }
        (None, Some(dir)) => {
            let in_order = InOrder {
                gate: gate.as_ref(),
                motion_planes: !args.still,
            };
            let (rows, failed) = score_sequence(&seg, dir, &rules, in_order)?;
            (rows, failed, true)
        }
        _ => bail!("give --data DIR, --sequence DIR, --negatives DIR, --recipe FILE, or --pred DIR --gt DIR"),
    };
    let labelled: Vec<(Option<TargetRule>, Metrics)> = rules.iter().map(|&r| Some(r)).zip(rows).collect();
    let label = match &gate {
        Some(g) => format!("{} ({g})", seg.name()),
        None => seg.name(),
    };
    print_rows(&label, &labelled, points_only, args.json, failed);
    if let Some(p) = &plot {
        let set = args
            .data
            .as_ref()
            .or(args.sequence.as_ref())
            .map(|d| d.display().to_string());
        let points = rules
            .iter()
            .map(|r| r.threshold)
            .zip(labelled.iter().map(|l| l.1))
            .collect();
        p.draw(&seg.name(), vec![series(set.unwrap_or_default(), !points_only, points)])?;
    }
    finish(&labelled[0].1, failed)
}

/// Scores every validation set of `recipe` by every rule and prints one table: a row per
/// set and rule with IoU, nIoU and F1 (mask-labelled sets), Pd, Fa and false targets per
/// frame.
fn eval_sets(
    seg: &Segmenter,
    recipe: &recipe::Recipe,
    rules: &[TargetRule],
    in_order: InOrder,
    json: bool,
    plot: Option<&Plot>,
    prefix: &str,
) -> Result<()> {
    let (sets, skipped) = recipe::load_validation(recipe, seg.channels())?;
    for s in &skipped {
        eprintln!("skipped {}: {}", s.name, s.reason);
    }
    let mut failed = skipped.len();
    let mut rows = Vec::new();
    for set in &sets {
        let inputs = set
            .items
            .iter()
            .map(|i| (i.name.clone(), Ok((i.image.clone(), i.truth.clone()))));
        let set_order = set.ordered.then_some(in_order);
        let set_gate = set_order.and_then(|o| o.gate);
        let (metrics, f) = score_all(seg, inputs, rules, set_order);
        failed += f;
        let masks = set.items.iter().all(|i| matches!(i.truth, Truth::Mask(_)));
        // A sequence scored after the motion gate says so in its row's name (the table's
        // header names the gate's settings).
        let gated = if set_gate.is_some() { "gated " } else { "" };
        let name = format!("{prefix}{gated}{}", set.name);
        for (r, m) in rules.iter().zip(metrics) {
            rows.push((name.clone(), *r, masks, m));
        }
    }
    if json {
        for (name, r, masks, m) in &rows {
            let scoring = if *masks { "mask" } else { "centroid" };
            let mut row = serde_json::json!({ "model": seg.name(), "set": name, "rule": scoring, "metrics": m });
            r.record(&mut row);
            println!("{row}");
        }
    } else {
        let model = match in_order.gate {
            Some(g) => format!("{} ({g} on the sequences)", seg.name()),
            None => seg.name(),
        };
        println!("{}", sets_table(&model, &rows));
    }
    if let Some(p) = plot {
        let mut by_set: Vec<plot::SweepSeries> = Vec::new();
        for (name, r, masks, m) in rows {
            match by_set.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((r.threshold, m)),
                None => by_set.push(series(name, masks, vec![(r.threshold, m)])),
            }
        }
        p.draw(&seg.name(), by_set)?;
    }
    if failed > 0 {
        bail!("{failed} inputs could not be scored (see above)");
    }
    Ok(())
}

/// Where `--plot` draws, the operating point it marks, and the grow threshold of every point.
struct Plot<'a> {
    path: &'a Path,
    operating: f32,
    grow: Option<f32>,
}

impl Plot<'_> {
    fn draw(&self, model: &str, mut sets: Vec<plot::SweepSeries>) -> Result<()> {
        for s in &mut sets {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let grown = self.grow.map_or(String::new(), |g| format!(", each grown to {g}"));
        let title = format!(
            "{model}: threshold sweep{grown} (operating point {} marked)",
            self.operating
        );
        plot::sweep(self.path, &title, &sets, Some(self.operating))?;
        eprintln!("wrote {}", self.path.display());
        Ok(())
    }
}

fn series(name: String, masks: bool, points: Vec<(f32, Metrics)>) -> plot::SweepSeries {
    plot::SweepSeries { name, masks, points }
}

/// `name` ("KIND PATH", perhaps after a label) in at most `width` characters: the words before
/// the path kept whole and the path's start elided, since its end is what tells sets apart.
fn fit_name(name: &str, width: usize) -> String {
    let tail = |s: &str, n: usize| -> String {
        let skip = s.chars().count().saturating_sub(n);
        s.chars().skip(skip).collect()
    };
    if name.chars().count() <= width {
        return name.to_string();
    }
    let (label, path) = name.rsplit_once(' ').unwrap_or(("", name));
    // The label, a space, an ellipsis, and at least a few characters of the path.
    let room = width.saturating_sub(label.chars().count() + 2);
    if label.is_empty() || room < 8 {
        return format!("…{}", tail(name, width - 1));
    }
    format!("{label} …{}", tail(path, room))
}

/// The validation table: one row per (set, rule); `grow` is `-` for the plain threshold.
pub fn sets_table(model: &str, rows: &[(String, TargetRule, bool, Metrics)]) -> String {
    let mut out = format!(
        "{model}\n{:<48} {:>5} {:>5} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8}\n",
        "set", "thr", "grow", "images", "IoU", "nIoU", "F1", "Pd", "hits", "Fa×1e-6", "FT/frame"
    );
    for (name, r, masks, m) in rows {
        let (t, grow) = (r.threshold, r.grow.map_or("-".to_string(), |g| format!("{g:.2}")));
        let (iou, niou, f1) = if *masks {
            (
                format!("{:.4}", m.iou),
                format!("{:.4}", m.niou),
                format!("{:.4}", m.f1),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        let pd = if m.targets > 0 {
            format!("{:.4}", m.pd)
        } else {
            "-".into()
        };
        let name = fit_name(name, 48);
        out.push_str(&format!(
            "{name:<48} {t:>5.2} {grow:>5} {:>6} {iou:>7} {niou:>7} {f1:>7} {pd:>7} {:>7} {:>9.2} {:>8.3}\n",
            m.images,
            format!("{}/{}", m.hits, m.targets),
            m.fa * 1e6,
            m.false_targets_per_frame
        ));
    }
    out
}

/// A non-zero exit when something could not be scored, or nothing was.
fn finish(m: &Metrics, failed: usize) -> Result<()> {
    if failed > 0 {
        bail!(
            "{failed} inputs could not be scored (see above); the metrics cover the {} others",
            m.images
        );
    }
    if m.images == 0 {
        bail!("nothing was scored");
    }
    Ok(())
}

fn print_rows(label: &str, rows: &[(Option<TargetRule>, Metrics)], points_only: bool, json: bool, failed: usize) {
    for (r, m) in rows {
        if json {
            let scoring = if points_only { "centroid" } else { "mask" };
            let mut row = serde_json::json!({ "model": label, "threshold": null, "rule": scoring, "metrics": m, "failed": failed });
            if let Some(r) = r {
                r.record(&mut row);
            }
            println!("{row}");
        } else {
            let label = match r {
                Some(r) => format!("{label} at {r}"),
                None => label.to_string(),
            };
            println!("{}", table(&label, m, points_only));
        }
    }
}

/// Scores every input by every rule (the probabilities are computed once per input); an input
/// that cannot be read or run is reported and counted. Inputs `in_order` are a sequence's
/// frames in order: a motion model sees each with its motion plane (unless told not to), and
/// with a motion gate they are scored by their centroids after a copy of the gate per rule.
/// Other inputs are still images (a motion model's plane is zero).
fn score_all(
    seg: &Segmenter,
    inputs: impl ExactSizeIterator<Item = (String, Result<(Frame, Truth)>)>,
    rules: &[TargetRule],
    in_order: Option<InOrder>,
) -> (Vec<Metrics>, usize) {
    let mut accs = vec![MetricAccumulator::default(); rules.len()];
    let gate = in_order.and_then(|o| o.gate);
    let mut gates: Vec<Option<MotionGate>> = rules.iter().map(|_| gate.cloned()).collect();
    let planes = in_order.is_some_and(|o| o.motion_planes);
    let mut motion = seg.motion().filter(|_| planes).map(MotionPlanes::new);
    // The scene's motion is measured once per frame for every rule's gate and the motion plane.
    let reach = gate
        .map_or(0, MotionGate::register)
        .max(motion.as_ref().map_or(0, MotionPlanes::reach));
    let mut scene = (reach > 0).then(|| crate::stream::register::SceneTracker::new(reach));
    let mut failed = 0;
    let mut progress = Progress::new("eval", inputs.len() as u64);
    for (name, input) in inputs {
        progress.inc();
        let scored = input.and_then(|(frame, truth)| {
            let step = scene
                .as_mut()
                .and_then(|s| s.step(frame.plane(0), frame.width, frame.height));
            let frame = match motion.as_mut() {
                Some(m) => m.attach(&frame, step),
                None => frame,
            };
            let first = seg.detect(&frame, rules[0])?;
            for (i, ((acc, &r), g)) in accs.iter_mut().zip(rules).zip(&mut gates).enumerate() {
                let other;
                let det = if i == 0 {
                    &first
                } else {
                    other = seg.at_rule(&frame, &first, r);
                    &other
                };
                match (g, &truth) {
                    (None, _) => acc.add(&det.target_mask, frame.width, frame.height, &truth),
                    (Some(g), Truth::Points(points)) => {
                        let kept = g.filter(&frame, step, det.targets.clone());
                        let blobs: Vec<_> = kept.iter().map(Target::blob).collect();
                        acc.add_blobs(&blobs, points, frame.width, frame.height);
                    }
                    (Some(_), Truth::Mask(_)) => {
                        bail!("the motion gate scores sequences by their centroids, not masks")
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = scored {
            failed += 1;
            eprintln!("skipped {name}: {e:#}");
        }
    }
    progress.finish();
    (accs.iter().map(MetricAccumulator::finish).collect(), failed)
}

/// Scores `seg` on the pairs of `layout` listed in `split` (all when none) at native
/// resolution, by a single rule.
pub fn eval_model(
    seg: &Segmenter,
    layout: &PairLayout,
    split: Option<&Path>,
    rule: TargetRule,
) -> Result<(Metrics, usize)> {
    let (mut rows, failed) = sweep_model(seg, layout, split, &[rule])?;
    Ok((rows.remove(0), failed))
}

/// Scores `seg` on a labelled set by several rules in one pass.
pub fn sweep_model(
    seg: &Segmenter,
    layout: &PairLayout,
    split: Option<&Path>,
    rules: &[TargetRule],
) -> Result<(Vec<Metrics>, usize)> {
    let names = layout.names(split)?;
    let inputs = names.into_iter().map(|name| {
        let pair = read_pair(layout, &name, seg.channels()).map(|(f, m)| (f, Truth::Mask(m)));
        (name, pair)
    });
    Ok(score_all(seg, inputs, rules, None))
}

/// Pd, Fa and false targets per frame on a sequence (`frames/` + `centroids.csv`) with the
/// 3-pixel centroid rule; every frame is scored (one without a line has no target), a motion
/// model's with their motion planes.
pub fn sweep_sequence(
    seg: &Segmenter,
    dir: &Path,
    rules: &[TargetRule],
    gate: Option<&MotionGate>,
) -> Result<(Vec<Metrics>, usize)> {
    let in_order = InOrder {
        gate,
        motion_planes: true,
    };
    score_sequence(seg, dir, rules, in_order)
}

/// [`sweep_sequence`], the frames seen as `in_order` says.
fn score_sequence(
    seg: &Segmenter,
    dir: &Path,
    rules: &[TargetRule],
    in_order: InOrder,
) -> Result<(Vec<Metrics>, usize)> {
    let seq = Sequence::open(dir)?;
    if !seq.is_annotated() {
        bail!(
            "{}: no centroids.csv, so there is nothing to score against",
            dir.display()
        );
    }
    let inputs = seq.frames.into_iter().map(|f| {
        let frame = read_frame(&f.path, seg.channels()).map(|fr| (fr, Truth::Points(f.truth.unwrap_or_default())));
        (f.path.display().to_string(), frame)
    });
    Ok(score_all(seg, inputs, rules, Some(in_order)))
}

/// Scores prediction masks in `pred` against every ground-truth mask in `gt` (the prediction
/// for `NAME{gt_suffix}.EXT` is `NAME.EXT`). A ground truth without a prediction, or a
/// prediction without a ground truth, counts as a failure: scoring only what was predicted
/// would hide every image the method missed.
pub fn eval_masks(pred: &Path, gt: &Path, gt_suffix: &str) -> Result<(Metrics, usize)> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && crate::dataset::folder::is_image(p))
            .collect();
        v.sort();
        Ok(v)
    };
    let (gts, mut preds) = (list(gt)?, list(pred)?);
    if gts.is_empty() {
        bail!("no ground-truth masks in {}", gt.display());
    }
    let mut acc = MetricAccumulator::default();
    let mut failed = 0;
    for g in &gts {
        let stem = g.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let Some(name) = stem.strip_suffix(gt_suffix) else {
            continue;
        };
        let ext = g.extension().and_then(|s| s.to_str()).unwrap_or("png");
        let p = pred.join(format!("{name}.{ext}"));
        preds.retain(|q| q != &p);
        let scored = (|| -> Result<()> {
            if !p.exists() {
                bail!("no prediction {} for it", p.display());
            }
            let (pm, gm) = (read_mask(&p)?, read_mask(g)?);
            if (pm.width, pm.height) != (gm.width, gm.height) {
                bail!(
                    "prediction {} is {}×{}, ground truth {}×{}",
                    p.display(),
                    pm.width,
                    pm.height,
                    gm.width,
                    gm.height
                );
            }
            let b = |v: &[f32]| v.iter().map(|&x| x > 0.5).collect::<Vec<bool>>();
            acc.add_mask(&b(&pm.data), &b(&gm.data), pm.width, pm.height);
            Ok(())
        })();
        if let Err(e) = scored {
            failed += 1;
            eprintln!("skipped {}: {e:#}", g.display());
        }
    }
    for p in preds {
        failed += 1;
        eprintln!(
            "skipped {}: no ground truth for this prediction in {}",
            p.display(),
            gt.display()
        );
    }
    Ok((acc.finish(), failed))
}

/// A table for people; `points_only` for centroid-annotated sequences (Pd, Fa and false
/// targets only).
pub fn table(label: &str, m: &Metrics, points_only: bool) -> String {
    if points_only {
        return format!(
            "{label} (centroid rule, {MATCH_DISTANCE} px)\n  frames {}  targets {}  hits {}\n  Pd     {:.4}\n  Fa     {:.2} ×1e-6\n  false targets per frame {:.3}",
            m.images,
            m.targets,
            m.hits,
            m.pd,
            m.fa * 1e6,
            m.false_targets_per_frame
        );
    }
    format!(
        "{label}\n  images {}  targets {}  hits {}\n  IoU    {:.4}\n  nIoU   {:.4}\n  F1     {:.4}\n  Pd     {:.4}\n  Fa     {:.2} ×1e-6\n  false targets per frame {:.3}\n  paper per-image IoU {:.4}  F1 {:.4}",
        m.images,
        m.targets,
        m.hits,
        m.iou,
        m.niou,
        m.f1,
        m.pd,
        m.fa * 1e6,
        m.false_targets_per_frame,
        m.paper_iou,
        m.paper_f1
    )
}

#[cfg(test)]
mod tests {
    use super::fit_name;

    #[test]
    fn long_set_names_keep_their_kind_and_the_end_of_their_path() {
        assert_eq!(fit_name("negatives bg", 48), "negatives bg");
        let long = "trained-on sirst /work/shared/data/sirst-v2-extra";
        let fitted = fit_name(long, 40);
        assert_eq!(fitted, "trained-on sirst …ed/data/sirst-v2-extra");
        assert_eq!(fitted.chars().count(), 40);
        // A name without room for its label is cut from the start, as before.
        assert_eq!(
            fit_name("a-very-long-label-without-any-path-at-all x", 12),
            "…th-at-all x"
        );
    }
}
