//! The training loop shared by both stages: epochs of shuffled, augmented batches; validation;
//! per-epoch checkpoints with the optimiser state (exact `--resume`); a checkpoint on Ctrl-C;
//! a JSON Lines log; the best checkpoint kept by a named score (and, with `--keep-epochs`, every
//! validated one); optionally an average of the weights that validation and those use.

use super::augment::{augment_around, sample_rng, synthesize, AugmentConfig, Synthesis};
use super::checkpoint::{self, Checkpoint, RunState};
use super::data::Sample;
use super::ema::{Ema, Swapped};
use super::loss::LossConfig;
use super::mining::{self, HardNegative};
use super::motion::{self, Earlier};
use super::optim::{Sgd, SgdConfig};
use super::recipe::{Group, ValSet};
use super::stages::{is_running_statistic, ReconStage, SegStage};
use crate::dataset::Truth;
use crate::detect::TargetRule;
use crate::engine::runner::CpuEngine;
use crate::engine::simd::Isa;
use crate::engine::threads::default_threads;
use crate::eval::metrics::{MetricAccumulator, Metrics};
use crate::image_io::Frame;
use crate::model::weights::{VarSource, WeightStore};
use crate::model::weights_file::{WeightsFile, RECON_PREFIX, SEG_PREFIX};
use crate::model::{ModelConfig, Srsnet, Weights};
use crate::preprocess::PreprocessSpec;
use crate::progress::Progress;
use crate::stream::stop::Stop;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Everything a stage's run needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The model's sizes.
    pub config: ModelConfig,
    /// The normalisation and geometry recorded with the weights.
    pub preprocess: PreprocessSpec,
    /// Epochs.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Optimiser settings.
    pub sgd: SgdConfig,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Cropping and flips.
    pub augment: AugmentConfig,
    /// Validate every this many epochs (and after the last).
    pub val_every: usize,
    /// Checkpoints and log.jsonl go here.
    pub out_dir: PathBuf,
    /// Continue from the last checkpoint.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Where training runs.
    pub device: Device,
    /// Stop (as on Ctrl-C, with a checkpoint) after this many batches of this run.
    pub stop_after_batches: Option<usize>,
    /// Share of segmentation crops centred on a false target of the current net instead
    /// (`train::mining`; mined at the start of every `val_every`-th epoch); 0 turns mining off.
    pub hard_negatives: f64,
    /// The segmentation loss's costs beyond the reference's: what a target-free crop costs and
    /// with what weight, and the weight of the per-target loss (`train::loss`).
    pub loss: LossConfig,
    /// The probability above which the segmentation stage's validations count a pixel as
    /// target; the best checkpoint is chosen at it. Validating at the operating point the
    /// weights will ship with keeps selection and use at the same threshold.
    pub val_threshold: f64,
    /// Where set, validations grow each target from its pixels above `val_threshold` over its
    /// connected pixels above this (the hysteresis rule of `srsnet eval --grow`), so that the
    /// checkpoint is chosen by the rule the weights will ship with.
    pub val_grow: Option<f64>,
    /// An epoch where a validation set with targets has a Pd below this is not taken as the
    /// best checkpoint, whatever its score (0: every epoch may be). Why: the mean score
    /// trades Pd for fewer false targets freely, and run `lite-v11-stuck-ignored` peaked at
    /// an epoch that missed a quarter of DAUB 5's aircraft, four epochs before one that
    /// found 92 % of them (models/README.md).
    pub val_min_pd: f64,
    /// At the end of every epoch, re-estimate the BatchNorm running statistics as their plain
    /// mean over this many of the epoch's batches (0: keep training's averages); see
    /// [`precise_bn`].
    pub precise_bn: usize,
    /// The decay of an exponential moving average of the weights (`train::ema`), which
    /// validation and the kept checkpoints then use; `None`: the raw weights.
    pub ema: Option<f64>,
    /// Also keep every validated epoch's weights (`{stage}-epochN.ckpt.safetensors`), not only
    /// the best and the last, so that an epoch the selection rule passed over can still be
    /// examined or shipped.
    pub keep_epochs: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch ran.
    Finished,
    /// Stopped by Ctrl-C / SIGTERM after writing a checkpoint; `--resume` continues.
    Interrupted,
}

/// The data of a run: training samples at the training size, drawn per epoch by their
/// groups' weights; validation sets at native resolution.
pub struct TrainData {
    /// Training samples, at the training size.
    pub train: Vec<Sample>,
    /// Which samples form which dataset, and its weight (together they cover `train`).
    pub groups: Vec<Group>,
    /// Validation sets, native size.
    pub val: Vec<ValSet>,
}

impl TrainData {
    /// One group of weight 1 over all of `train`.
    pub fn new(train: Vec<Sample>, val: Vec<ValSet>) -> Self {
        let groups = vec![Group {
            name: "train".into(),
            range: 0..train.len(),
            weight: 1.0,
        }];
        Self { train, groups, val }
    }

    /// Samples drawn per epoch: round(weight × size) of each group.
    fn epoch_len(&self) -> usize {
        self.groups.iter().map(draws).sum()
    }
}

fn draws(g: &Group) -> usize {
    (g.weight * g.range.len() as f64).round() as usize
}

/// File names inside the output folder.
pub fn last_path(out: &Path, stage: &str) -> PathBuf {
    out.join(format!("{stage}-last.ckpt.safetensors"))
}

/// The best checkpoint of `stage` in `out`.
pub fn best_path(out: &Path, stage: &str) -> PathBuf {
    out.join(format!("{stage}-best.ckpt.safetensors"))
}

/// The checkpoint of validated epoch `epoch` (counted from 1) of `stage`, with `--keep-epochs`.
pub fn epoch_path(out: &Path, stage: &str, epoch: usize) -> PathBuf {
    out.join(format!("{stage}-epoch{epoch}.ckpt.safetensors"))
}

/// The epochs of `stage` whose checkpoints `out` keeps (`--keep-epochs`), in order.
pub fn kept_epochs(out: &Path, stage: &str) -> Result<Vec<usize>> {
    let prefix = format!("{stage}-epoch");
    let mut epochs = Vec::new();
    let dir = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
    for entry in dir {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let n = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".ckpt.safetensors"));
        if let Some(epoch) = n.and_then(|n| n.parse().ok()) {
            epochs.push(epoch);
        }
    }
    epochs.sort_unstable();
    Ok(epochs)
}

/// What a stage does per batch and at validation.
trait Stage {
    fn name(&self) -> &'static str;
    fn step(&mut self, x: &Tensor, mask: &Tensor) -> Result<f64>;
    /// Returns the score used to keep the best checkpoint (higher is better) and a JSON report.
    fn validate(&mut self, val: &[ValSet], opts: &TrainOptions) -> Result<(f64, serde_json::Value)>;
    fn opt(&mut self) -> &mut Sgd;
    fn vars(&self) -> BTreeMap<String, Var>;
    /// The false targets the stage's net raises on `samples` (`train::mining`); a stage
    /// without a segmentation output has none.
    fn mine(&mut self, _samples: &[Sample], _opts: &TrainOptions) -> Result<Vec<HardNegative>> {
        Ok(Vec::new())
    }
    /// Adds batch `k` (from 0) to a fresh estimate of the BatchNorm running statistics (see
    /// [`precise_bn`]); a stage without that pass keeps its training averages.
    fn accumulate_bn_statistics(&mut self, _x: &Tensor, _k: usize) -> Result<()> {
        Ok(())
    }
}

impl Stage for ReconStage {
    fn name(&self) -> &'static str {
        "recon"
    }
    fn step(&mut self, x: &Tensor, _mask: &Tensor) -> Result<f64> {
        Ok(ReconStage::step(self, x)?)
    }
    /// Score: −(mean val MSE), i.e. the lowest reconstruction error is best.
    fn validate(&mut self, val: &[ValSet], opts: &TrainOptions) -> Result<(f64, serde_json::Value)> {
        let (mut total, mut n) = (0.0, 0usize);
        for item in val.iter().flat_map(|v| &v.items) {
            let (x, _) = opts.preprocess.prepare(&item.image, DType::F32, &opts.device)?;
            total += self.eval_loss(&x)?;
            n += 1;
        }
        let mse = total / n.max(1) as f64;
        Ok((-mse, json!({ "val_mse": mse })))
    }
    fn opt(&mut self) -> &mut Sgd {
        &mut self.opt
    }
    fn vars(&self) -> BTreeMap<String, Var> {
        self.vars.vars()
    }
}

impl Stage for SegStage {
    fn name(&self) -> &'static str {
        "seg"
    }
    fn step(&mut self, x: &Tensor, mask: &Tensor) -> Result<f64> {
        Ok(SegStage::step(self, x, mask)?)
    }
    fn accumulate_bn_statistics(&mut self, x: &Tensor, k: usize) -> Result<()> {
        Ok(SegStage::accumulate_bn_statistics(self, x, k)?)
    }
    /// Score: the mean over validation sets of each set's score (see [`set_score`]).
    fn validate(&mut self, val: &[ValSet], opts: &TrainOptions) -> Result<(f64, serde_json::Value)> {
        let mut rows = Vec::new();
        let mut total = 0.0;
        let mut runner = SegRunner::new(self, &opts.device)?;
        let mut metrics = Vec::new();
        let rule = validation_rule(opts.val_threshold, opts.val_grow)?;
        for set in val {
            let m = validate_seg(&mut runner, set, &opts.preprocess, rule)?;
            let score = set_score(set, &m);
            total += score;
            rows.push(json!({ "set": set.name, "score": score, "metrics": m }));
            metrics.push(m);
        }
        let nothing = marks_nothing(&metrics);
        if nothing {
            eprintln!(
                "warning: the net marks nothing above {} on any validation set (no target found, no false \
                 target): it has collapsed to background, the cheapest answer to a strong target-free cost \
                 (--negative-weight, --hard-negatives); the score it gets is only the target-free sets' share",
                opts.val_threshold
            );
        }
        let score = total / val.len().max(1) as f64;
        // A single set keeps the flat report older tools read (`val.iou`, ...).
        let mut report = match (val.len(), rows.first()) {
            (1, Some(r)) => r["metrics"].clone(),
            _ => json!({ "sets": rows, "score": score }),
        };
        report["threshold"] = json!(opts.val_threshold);
        report["grow"] = json!(opts.val_grow);
        report["marks_nothing"] = json!(nothing);
        let names: Vec<&str> = val.iter().map(|s| s.name.as_str()).collect();
        report["below_pd_floor"] = json!(below_pd_floor(&names, &metrics, opts.val_min_pd));
        Ok((score, report))
    }
    fn opt(&mut self) -> &mut Sgd {
        &mut self.opt
    }
    fn vars(&self) -> BTreeMap<String, Var> {
        self.vars.vars()
    }
    fn mine(&mut self, samples: &[Sample], opts: &TrainOptions) -> Result<Vec<HardNegative>> {
        let mut runner = SegRunner::new(self, &opts.device)?;
        mining::mine(samples, |image| runner.logits(image, &opts.preprocess))
    }
}

/// A validation set's score, in [0, 1], higher is better; fixed before any run looked at it:
/// - mask-labelled sets: dataset-level IoU;
/// - sets with targets scored by points: Pd / (1 + false targets per frame);
/// - target-free sets: 1 / (1 + false targets per frame).
pub fn set_score(set: &ValSet, m: &Metrics) -> f64 {
    let masks = set.items.iter().all(|i| matches!(i.truth, Truth::Mask(_)));
    if masks {
        m.iou
    } else if m.targets > 0 {
        m.pd / (1.0 + m.false_targets_per_frame)
    } else {
        1.0 / (1.0 + m.false_targets_per_frame)
    }
}

/// How validation runs S: on the CPU, the plan engine on the folded model, as `eval` and
/// `run` do (several times faster than the Candle graph at the native sizes of validation
/// frames); elsewhere the training graph in eval mode.
pub enum SegRunner<'a> {
    /// The folded model and the plan engine.
    Plan(Box<Srsnet>, CpuEngine),
    /// The Candle graph on a device.
    Candle(&'a SegStage, Device),
}

impl<'a> SegRunner<'a> {
    /// The runner for `stage` on `device`, with the model's current values.
    pub fn new(stage: &'a SegStage, device: &Device) -> Result<Self> {
        Ok(match device {
            Device::Cpu => SegRunner::Plan(
                Box::new(stage.folded()?),
                CpuEngine::new(default_threads(), Isa::best())?,
            ),
            _ => SegRunner::Candle(stage, device.clone()),
        })
    }

    /// S's logits for `image`, at its native size.
    pub fn logits(&mut self, image: &Frame, spec: &PreprocessSpec) -> Result<Vec<f32>> {
        match self {
            SegRunner::Plan(model, engine) => {
                let (input, (nw, nh), restore) = spec.prepare_values(image)?;
                let mut z = vec![0.0; nw * nh];
                engine.forward(model, &input, nh, nw, &mut z)?;
                Ok(restore.apply(&z, nw, nh, image.width, image.height))
            }
            SegRunner::Candle(stage, device) => {
                let (x, restore) = spec.prepare(image, DType::F32, device)?;
                let logits = stage.predict(&x)?;
                let (_, _, oh, ow) = logits.dims4()?;
                let plane = logits.flatten_all()?.to_vec1::<f32>()?;
                Ok(restore.apply(&plane, ow, oh, image.width, image.height))
            }
        }
    }
}

/// The metrics of the segmentation net (eval mode) on one validation set at native
/// resolution, its target pixels those of `rule`.
pub fn validate_seg(runner: &mut SegRunner, set: &ValSet, spec: &PreprocessSpec, rule: TargetRule) -> Result<Metrics> {
    let mut acc = MetricAccumulator::default();
    // A motion model sees a sequence's frames with their motion planes, still images without.
    let with_motion = set.with_motion_planes(spec.motion);
    for (k, item) in set.items.iter().enumerate() {
        let image = with_motion.as_ref().map_or(&item.image, |frames| &frames[k]);
        let z = runner.logits(image, spec)?;
        let (w, h) = (item.image.width, item.image.height);
        acc.add(&target_pixels(&z, w, h, rule), w, h, &item.truth);
    }
    Ok(acc.finish())
}

/// The target rule of the validations: `--val-threshold`, grown to `--val-grow` where set
/// (checked once when the command is parsed, and again here for library callers).
pub fn validation_rule(threshold: f64, grow: Option<f64>) -> Result<TargetRule> {
    TargetRule::new(threshold as f32, grow.map(|g| g as f32)).map_err(|e| anyhow::anyhow!("--val-grow: {e}"))
}

/// The sets with targets whose Pd is below `floor` (none when `floor` is 0).
fn below_pd_floor<'a>(names: &[&'a str], sets: &[Metrics], floor: f64) -> Vec<&'a str> {
    names
        .iter()
        .zip(sets)
        .filter(|(_, m)| m.targets > 0 && m.pd < floor)
        .map(|(n, _)| *n)
        .collect()
}

/// Whether validation found no component at all on any set: neither a target nor a false
/// target (run `lite-v8-stuck` in models/README.md collapsed so, unseen until epoch 7).
fn marks_nothing(sets: &[Metrics]) -> bool {
    !sets.is_empty() && sets.iter().all(|m| m.hits == 0 && m.false_targets == 0)
}

/// Which pixels of a logit map are target by `rule`, computed as `srsnet eval` does (the f32
/// sigmoid, then the detector's target rule), so that a checkpoint chosen here scores the
/// same there.
fn target_pixels(logits: &[f32], w: usize, h: usize, rule: TargetRule) -> Vec<bool> {
    let prob: Vec<f32> = logits.iter().map(|&z| crate::engine::kernels::sigmoid(z)).collect();
    rule.mask(&prob, w, h)
}

/// Draw `index` of `epoch`: sample `i` augmented, or, for a share `hard_negatives` of the
/// draws, a crop around a spot of `pool`; then its synthetic targets and artefacts.
///
/// A crop placed on a mined false target gets no synthetic target: it is there to be charged
/// as a false target by the negative loss, and a pasted target would make it a target crop,
/// charged by the Dice, whose push on a confident false blob vanishes (`train::loss`). Before
/// this, `--synthetic-targets 0.8` turned 80 % of the mined crops into target crops (run
/// `lite-v6-hn-weighted` in models/README.md).
///
/// For a motion model (`motion`), the crop ends with its motion plane (`train::motion`): its
/// synthetic targets and artefacts are drawn into the crop's earlier frame too, as they would
/// have moved.
fn training_crop(
    data: &[Sample],
    i: usize,
    (seed, epoch, index): (u64, usize, usize),
    augment: &AugmentConfig,
    (hard_negatives, pool): (f64, &[HardNegative]),
    motion: bool,
) -> (Frame, Option<Vec<f32>>) {
    // Its own random stream, so that a run without mining draws exactly as before.
    let spot = mining::draw(pool, hard_negatives, &mut sample_rng(!seed, epoch, index));
    let (sample, centre) = match spot {
        Some(h) => (&data[h.sample], Some((h.x, h.y))),
        None => (&data[i], None),
    };
    let mut rng = sample_rng(seed, epoch, index);
    let (mut img, mut mask) = augment_around(sample, augment, centre, &mut rng);
    let synthesis = match centre {
        Some(_) => Synthesis {
            targets: 0.0,
            ..augment.synthesis
        },
        None => augment.synthesis,
    };
    if !motion {
        synthesize(&mut img, &mut mask, &synthesis, &mut rng, None);
        return (img, mask);
    }
    // Its own random stream, so that the crop's other draws are those of a single-frame run.
    let mut earlier = Earlier::draw(&mut img, sample_rng(seed.rotate_left(29), epoch, index));
    synthesize(&mut img, &mut mask, &synthesis, &mut rng, earlier.as_mut());
    (motion::attach(&img, earlier.as_ref()), mask)
}

fn batches_per_epoch(n: usize, batch: usize) -> usize {
    n.div_ceil(batch)
}

/// Builds batch `b` of `epoch`: augmented, normalised images and masks. A share
/// `opts.hard_negatives` of the draws is replaced by a crop around a spot of `pool`.
fn make_batch(
    data: &[Sample],
    order: &[usize],
    b: usize,
    opts: &TrainOptions,
    epoch: usize,
    pool: &[HardNegative],
) -> Result<(Tensor, Tensor)> {
    let idx = &order[b * opts.batch..((b + 1) * opts.batch).min(order.len())];
    let (mut xs, mut ms) = (Vec::new(), Vec::new());
    let mut side = 0;
    for (k, &i) in idx.iter().enumerate() {
        let index = b * opts.batch + k;
        let draw = (opts.seed, epoch, index);
        let motion = opts.preprocess.motion.is_some();
        let (img, mask) = training_crop(data, i, draw, &opts.augment, (opts.hard_negatives, pool), motion);
        side = img.width;
        xs.extend(opts.preprocess.normalise_frame(&img)?);
        ms.extend(mask.unwrap_or_else(|| vec![0.0; side * side]));
    }
    let n = idx.len();
    let c = opts.preprocess.input_planes();
    let x = Tensor::from_vec(xs, (n, c, side, side), &Device::Cpu)?.to_device(&opts.device)?;
    let m = Tensor::from_vec(ms, (n, 1, side, side), &Device::Cpu)?.to_device(&opts.device)?;
    Ok((x, m))
}

/// The samples of `epoch`, shuffled: each group contributes every sample ⌊weight⌋ times plus
/// a random subset for the fraction. Deterministic per (seed, epoch), so a resumed run draws
/// the same; a single group of weight 1 is a plain shuffle of all samples.
fn epoch_order(data: &TrainData, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1_000_003 * epoch as u64));
    let mut order = Vec::with_capacity(data.epoch_len());
    for g in data.groups.iter().filter(|g| !g.range.is_empty()) {
        let (want, n) = (draws(g), g.range.len());
        for _ in 0..want / n {
            order.extend(g.range.clone());
        }
        let rest = want % n;
        if rest > 0 {
            let mut pick: Vec<usize> = g.range.clone().collect();
            pick.shuffle(&mut rng);
            order.extend(pick.into_iter().take(rest));
        }
    }
    order.shuffle(&mut rng);
    order
}

fn log_line(out: &Path, record: &serde_json::Value) -> Result<()> {
    let path = out.join("log.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{record}")?;
    Ok(())
}

/// Writes the stage's variables, momentum buffers and run state to `path`, and the weight
/// average where the run keeps one (the last checkpoint, from which `--resume` continues).
fn save(stage: &mut dyn Stage, path: &Path, state: &RunState, ema: Option<&Ema>) -> Result<()> {
    let vars = stage.vars();
    let extra = ema.into_iter().flat_map(|e| e.tensors());
    checkpoint::save(path, &vars, stage.opt().momentum(), extra, state)
}

/// Writes the weights a run delivers to `path`: the average where the run keeps one, else
/// the weights as they stand.
fn save_result(stage: &mut dyn Stage, path: &Path, state: &RunState, ema: Option<&Ema>) -> Result<()> {
    let vars = stage.vars();
    let swapped = ema.map(|e| e.swap_in(&vars)).transpose()?;
    let saved = save(stage, path, state, None);
    if let Some(s) = swapped {
        s.restore(&vars)?;
    }
    saved
}

/// Puts the average in place of the raw weights for validation (where the run keeps one);
/// with `--precise-bn` its BatchNorm statistics are re-estimated under the averaged weights
/// and become the average's. The caller restores the raw weights.
fn swap_in_average(
    stage: &mut dyn Stage,
    ema: Option<&mut Ema>,
    data: &TrainData,
    opts: &TrainOptions,
    (order, epoch): (&[usize], usize),
    pool: &[HardNegative],
) -> Result<Option<Swapped>> {
    let Some(ema) = ema else { return Ok(None) };
    let vars = stage.vars();
    let swapped = ema.swap_in(&vars)?;
    if opts.precise_bn > 0 {
        precise_bn(stage, data, opts, order, epoch, pool)?;
        ema.take(&vars, is_running_statistic)?;
    }
    Ok(Some(swapped))
}

/// Runs `stage` from `state` to the end (or to a stop request).
fn run_loop(
    stage: &mut dyn Stage,
    data: &TrainData,
    opts: &TrainOptions,
    mut state: RunState,
    mut ema: Option<Ema>,
    stop: &Stop,
) -> Result<Outcome> {
    let name = stage.name();
    let nb = batches_per_epoch(data.epoch_len(), opts.batch);
    let batches = (opts.epochs * nb) as u64;
    let mut pb = if opts.progress {
        Progress::new(name, batches)
    } else {
        Progress::hidden(name, batches)
    };
    pb.start_at((state.epoch * nb + state.batch) as u64);
    let mut run_batches = 0usize;
    while state.epoch < opts.epochs {
        let epoch = state.epoch;
        let order = epoch_order(data, opts.seed, epoch);
        if opts.hard_negatives > 0.0 && state.batch == 0 && epoch.is_multiple_of(opts.val_every.max(1)) {
            mine_into(stage, data, opts, &mut state, &mut pb)?;
        }
        let t0 = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        while state.batch < nb {
            let budget_spent = opts.stop_after_batches.is_some_and(|n| run_batches >= n);
            if stop.is_requested() || budget_spent {
                save(stage, &last_path(&opts.out_dir, name), &state, ema.as_ref())?;
                pb.abandon(format!(
                    "interrupted at epoch {epoch} batch {}; checkpoint written",
                    state.batch
                ));
                return Ok(Outcome::Interrupted);
            }
            let (x, m) = make_batch(&data.train, &order, state.batch, opts, epoch, &state.hard_negatives)?;
            let lr = stage.opt().lr();
            let loss = stage.step(&x, &m)?;
            if let Some(e) = &mut ema {
                e.update(&stage.vars())?;
            }
            if !loss.is_finite() {
                bail!(
                    "{name}: loss became {loss} at epoch {epoch} batch {} (lr {lr})",
                    state.batch
                );
            }
            loss_sum += loss * x.dim(0)? as f64;
            seen += x.dim(0)?;
            state.batch += 1;
            state.step += 1;
            run_batches += 1;
            let ips = seen as f64 / t0.elapsed().as_secs_f64();
            pb.set_message(format!(
                "epoch {}/{} loss {:.5} lr {lr:.2e} {ips:.2} img/s",
                epoch + 1,
                opts.epochs,
                loss_sum / seen as f64
            ));
            pb.inc();
        }
        let train_secs = t0.elapsed().as_secs_f64();
        precise_bn(stage, data, opts, &order, epoch, &state.hard_negatives)?;
        state.epoch += 1;
        state.batch = 0;
        let mut record = json!({
            "stage": name, "epoch": state.epoch, "train_loss": loss_sum / seen.max(1) as f64,
            "images_per_s": seen as f64 / train_secs, "train_secs": train_secs, "lr": stage.opt().lr(),
        });
        let validate = state.epoch.is_multiple_of(opts.val_every.max(1)) || state.epoch == opts.epochs;
        if validate && !data.val.is_empty() {
            let swapped = swap_in_average(stage, ema.as_mut(), data, opts, (&order, epoch), &state.hard_negatives)?;
            let kept = validate_and_keep(stage, data, opts, &mut state, &mut record, &mut pb);
            if let Some(s) = swapped {
                s.restore(&stage.vars())?;
            }
            kept?;
        }
        save(stage, &last_path(&opts.out_dir, name), &state, ema.as_ref())?;
        log_line(&opts.out_dir, &record)?;
        pb.println(&record.to_string());
    }
    pb.finish();
    if data.val.is_empty() {
        // Nothing to select on: the last epoch is the result.
        save_result(stage, &best_path(&opts.out_dir, name), &state, ema.as_ref())?;
    } else if state.best_epoch.is_none() {
        eprintln!(
            "warning: no validated epoch of {name} reached --val-min-pd {} on every set with targets; \
             the weights are the last epoch's (log.jsonl has each epoch's Pd)",
            opts.val_min_pd
        );
        save_result(stage, &best_path(&opts.out_dir, name), &state, ema.as_ref())?;
    }
    Ok(Outcome::Finished)
}

/// Validates the weights in place (the average, where the run keeps one), records the result
/// in `record`, and writes them as the best checkpoint if they are the best so far, and as the
/// epoch's own with `--keep-epochs`.
fn validate_and_keep(
    stage: &mut dyn Stage,
    data: &TrainData,
    opts: &TrainOptions,
    state: &mut RunState,
    record: &mut serde_json::Value,
    pb: &mut Progress,
) -> Result<()> {
    let name = stage.name();
    let (score, report) = stage.validate(&data.val, opts)?;
    record["val"] = report;
    record["score"] = json!(score);
    let below = record["val"]["below_pd_floor"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if below {
        pb.println(&format!(
            "epoch {}: Pd below --val-min-pd {} on {}: not a candidate for the best checkpoint",
            state.epoch, opts.val_min_pd, record["val"]["below_pd_floor"]
        ));
    }
    if !below && state.best_score.is_none_or(|b| score > b) {
        state.best_score = Some(score);
        state.best_epoch = Some(state.epoch);
        save(stage, &best_path(&opts.out_dir, name), state, None)?;
        record["best"] = json!(true);
    }
    if opts.keep_epochs {
        save(stage, &epoch_path(&opts.out_dir, name, state.epoch), state, None)?;
    }
    Ok(())
}

/// With `--precise-bn N`, replaces the BatchNorm running statistics at the end of an epoch by
/// their plain mean over the epoch's first N batches (the same crops it trained on), run
/// through the net as it stands. Why: training keeps an exponential average with momentum
/// 0.1, about the last ten batches of 8 mixed crops, so the statistics that validation,
/// mining and the weights file use depend on which crops came last; the high-confidence tail
/// that a 0.95 threshold cuts moves with them (the epoch-to-epoch swings of runs v13–v17 in
/// models/README.md). Wu & Johnson, "Rethinking 'Batch' in BatchNorm" (2021), call this
/// PreciseBN. Deterministic, so `--resume` stays exact.
fn precise_bn(
    stage: &mut dyn Stage,
    data: &TrainData,
    opts: &TrainOptions,
    order: &[usize],
    epoch: usize,
    pool: &[HardNegative],
) -> Result<()> {
    let n = opts.precise_bn.min(batches_per_epoch(order.len(), opts.batch));
    for k in 0..n {
        let (x, _) = make_batch(&data.train, order, k, opts, epoch, pool)?;
        stage.accumulate_bn_statistics(&x, k)?;
    }
    Ok(())
}

/// Replaces the run's hard-negative pool with the false targets of the stage's current net on
/// the training samples, and logs how many there are.
fn mine_into(
    stage: &mut dyn Stage,
    data: &TrainData,
    opts: &TrainOptions,
    state: &mut RunState,
    pb: &mut Progress,
) -> Result<()> {
    let t0 = Instant::now();
    pb.set_message(format!("epoch {}: mining hard negatives", state.epoch + 1));
    state.hard_negatives = stage.mine(&data.train, opts)?;
    let samples: std::collections::BTreeSet<usize> = state.hard_negatives.iter().map(|h| h.sample).collect();
    let record = json!({
        // `next_epoch`, not `epoch`: epoch records count finished epochs, and this one comes
        // before the epoch it names.
        "stage": stage.name(), "next_epoch": state.epoch + 1, "mined_false_targets": state.hard_negatives.len(),
        "samples_with_false_targets": samples.len(), "samples": data.train.len(),
        "mine_secs": t0.elapsed().as_secs_f64(),
    });
    log_line(&opts.out_dir, &record)?;
    pb.println(&record.to_string());
    Ok(())
}

/// Where to start: a fresh state, or the `last` checkpoint with `--resume`.
fn start(opts: &TrainOptions, stage: &str, nb: usize) -> Result<(Option<Checkpoint>, RunState)> {
    let last = last_path(&opts.out_dir, stage);
    if opts.resume && !last.exists() {
        eprintln!(
            "no {stage} checkpoint in {} yet: starting {stage} from scratch",
            opts.out_dir.display()
        );
    }
    if opts.resume && last.exists() {
        let ck = Checkpoint::open(&last)?;
        if ck.state.stage != stage {
            bail!("{} is a `{}` checkpoint, not `{stage}`", last.display(), ck.state.stage);
        }
        let mut state = ck.state.clone();
        eprintln!(
            "resuming {stage} from {} at epoch {} batch {}",
            last.display(),
            state.epoch,
            state.batch
        );
        if let Some(note) = other_isa_warning(state.isa.as_deref(), Isa::best().name()) {
            eprintln!("warning: {}: {note}", last.display());
        }
        state.isa = Some(Isa::best().name().into());
        return Ok((Some(ck), state));
    }
    let fresh = RunState {
        stage: stage.into(),
        epoch: 0,
        batch: 0,
        step: 0,
        max_steps: opts.epochs * nb,
        best_score: None,
        best_epoch: None,
        hard_negatives: Vec::new(),
        isa: Some(Isa::best().name().into()),
        ema_decay: opts.ema,
    };
    Ok((None, fresh))
}

/// What a resume on another instruction set than the checkpoint's is told (none when they
/// match, or the checkpoint predates the record).
fn other_isa_warning(recorded: Option<&str>, here: &str) -> Option<String> {
    let recorded = recorded.filter(|&r| r != here)?;
    Some(format!(
        "written where the CPU kernels ran {recorded}, resumed where they run {here}: the run continues, \
         but not bit for bit as it would have on {recorded} (kernels of another width round differently)"
    ))
}

/// The run's weight average: none without `--ema`, a fresh one equal to `vars` for a new run,
/// the checkpoint's for a resumed one. A resume must keep the decay it started with (the
/// average is part of the run's state).
fn start_ema(opts: &TrainOptions, ck: &Option<Checkpoint>, vars: &BTreeMap<String, Var>) -> Result<Option<Ema>> {
    let recorded = ck.as_ref().and_then(|c| c.state.ema_decay);
    if let Some(c) = ck.as_ref().filter(|_| recorded != opts.ema) {
        let said = |d: Option<f64>| d.map_or("no --ema".to_string(), |d| format!("--ema {d}"));
        bail!(
            "{}: the run was started with {}; resume it with the same (this command gives {})",
            c.store.path().display(),
            said(recorded),
            said(opts.ema)
        );
    }
    Ok(match (opts.ema, ck) {
        (None, _) => None,
        (Some(d), None) => Some(Ema::new(d, vars)?),
        (Some(d), Some(c)) => Some(Ema::from_store(d, &c.store, vars, &opts.device)?),
    })
}

fn var_source(ck: &Option<Checkpoint>, seed: u64) -> Arc<VarSource> {
    match ck {
        Some(c) => VarSource::with_prefix(Some(c.store.clone()), "var.", seed),
        None => VarSource::new(None, seed),
    }
}

/// Stage 1: trains the reconstruction net on `data.train` (labels unused).
pub fn train_recon(opts: &TrainOptions, data: &TrainData, stop: &Stop) -> Result<Outcome> {
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let nb = batches_per_epoch(data.epoch_len(), opts.batch);
    let (ck, state) = start(opts, "recon", nb)?;
    let vars = var_source(&ck, opts.seed);
    let w = Weights::from_vars(vars.clone(), DType::F32, &opts.device).pp("recon");
    let mut stage = ReconStage::new(&w, vars, &opts.config, opts.sgd, state.max_steps)?;
    if let Some(ck) = &ck {
        stage.opt.restore(ck.momentum(&opts.device)?, state.step);
    }
    let ema = start_ema(opts, &ck, &Stage::vars(&stage))?;
    run_loop(&mut stage, data, opts, state, ema, stop)
}

/// Where stage 2 starts: its frozen reconstruction net, and the segmentation net's first values.
#[derive(Clone, Copy)]
pub enum SegStart<'a> {
    /// R from a stage-1 checkpoint (`OUT/recon-best.ckpt.safetensors`); S initialised from the seed.
    Recon(&'a Path),
    /// Fine-tuning: R (frozen) and S's starting values both from a weights file, which must
    /// hold every tensor of the model.
    FineTune(&'a WeightsFile),
    /// Fine-tuning a deeper S (a config that [`ModelConfig::deepens`] the file's): R and S's
    /// blocks from the file, and each added block set to the identity (see [`added_blocks`]).
    Deepen(&'a WeightsFile),
    /// Fine-tuning S with a motion plane added to its input (a config that
    /// [`ModelConfig::adds_motion`] to the file's): everything from the file, and S's stem's
    /// weights on the new plane zero (see [`stem_with_motion`]).
    AddMotion(&'a WeightsFile),
}

impl SegStart<'_> {
    /// A read-only view of R's trained weights.
    fn recon_weights(&self, device: &Device) -> Result<Weights> {
        Ok(match self {
            SegStart::Recon(path) => {
                let recon = Checkpoint::open(path)
                    .with_context(|| format!("loading reconstruction weights {}", path.display()))?;
                Weights::new(recon.store.clone(), DType::F32, device)
                    .pp("var")
                    .pp(RECON_PREFIX)
            }
            SegStart::FineTune(file) | SegStart::Deepen(file) | SegStart::AddMotion(file) => {
                Weights::new(file.store.clone(), DType::F32, device).pp(RECON_PREFIX)
            }
        })
    }

    /// R's tensors for the final weights file, by name (`recon.*`).
    fn recon_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        // A checkpoint names its variables `var.<name>`; a weights file names them `<name>`.
        match self {
            SegStart::Recon(path) => tensors_under(&Checkpoint::open(path)?.store, "var.", RECON_PREFIX),
            SegStart::FineTune(file) | SegStart::Deepen(file) | SegStart::AddMotion(file) => {
                tensors_under(&file.store, "", RECON_PREFIX)
            }
        }
    }
}

/// The f32 tensors of `store` named `{stored_as}{net}.*`, keyed without `stored_as`.
fn tensors_under(store: &WeightStore, stored_as: &str, net: &str) -> Result<BTreeMap<String, Tensor>> {
    let prefix = format!("{stored_as}{net}.");
    let mut out = BTreeMap::new();
    for n in store.names().into_iter().filter(|n| n.starts_with(&prefix)) {
        out.insert(
            n[stored_as.len()..].to_string(),
            store.get_any_shape(&n, DType::F32, &Device::Cpu)?,
        );
    }
    Ok(out)
}

/// Stage 2: trains the segmentation net with the reconstruction encoder `from` names frozen.
pub fn train_seg(opts: &TrainOptions, data: &TrainData, from: SegStart, stop: &Stop) -> Result<Outcome> {
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let nb = batches_per_epoch(data.epoch_len(), opts.batch);
    let (ck, state) = start(opts, "seg", nb)?;
    let seed = opts.seed.wrapping_add(1);
    let vars = match (&ck, from) {
        // A resumed run continues from its own checkpoint, fine-tuned or not.
        (None, SegStart::FineTune(file)) => VarSource::strict(file.store.clone(), seed),
        // Tensors the file lacks are initialised; `added_blocks` then checks them.
        (None, SegStart::Deepen(file)) => VarSource::new(Some(file.store.clone()), seed),
        (None, SegStart::AddMotion(file)) => {
            let vars = VarSource::strict(file.store.clone(), seed);
            stem_with_motion(&vars, &file.store, &opts.config)?;
            eprintln!(
                "{}: S's stem takes a motion plane, its weights on it starting at zero",
                file.store.path().display()
            );
            vars
        }
        _ => var_source(&ck, seed),
    };
    let w = Weights::from_vars(vars.clone(), DType::F32, &opts.device).pp(SEG_PREFIX);
    let rw = from.recon_weights(&opts.device)?;
    let mut stage = SegStage::new(&w, vars.clone(), &rw, &opts.config, opts.sgd, state.max_steps)?;
    if let (None, SegStart::Deepen(file)) = (&ck, from) {
        let n = added_blocks(&vars, &file.store)?;
        eprintln!(
            "{}: S deepened by {n} Res-CBAM blocks, each starting as the identity",
            file.store.path().display()
        );
    }
    stage.loss = opts.loss;
    if let Some(ck) = &ck {
        stage.opt.restore(ck.momentum(&opts.device)?, state.step);
    }
    // After `added_blocks`: a deepened run's average starts from its identity blocks.
    let ema = start_ema(opts, &ck, &Stage::vars(&stage))?;
    run_loop(&mut stage, data, opts, state, ema, stop)
}

/// S's stem convolution, the one tensor whose shape a motion plane changes.
const SEG_STEM_WEIGHT: &str = "seg.conv1.0.weight";

/// Sets S's stem weights to the file's with a zero input plane appended for the motion plane,
/// so that the widened net computes the file's function whatever the motion plane holds, and
/// learns to use it from there (the gradient on the new weights is not zero).
fn stem_with_motion(vars: &VarSource, store: &WeightStore, config: &ModelConfig) -> Result<()> {
    let (stem, image) = (config.seg.stem, config.in_channels);
    let old = store
        .get(SEG_STEM_WEIGHT, &[stem, image, 3, 3], DType::F32, &Device::Cpu)
        .with_context(|| format!("{}: S's stem", store.path().display()))?;
    let widened = Tensor::cat(&[&old, &old.narrow(1, 0, 1)?.zeros_like()?], 1)?;
    vars.preset(SEG_STEM_WEIGHT, widened)?;
    Ok(())
}

/// Checks and initialises the blocks a deeper S has beyond the file it starts from: every
/// variable the file lacks must belong to block `i ≥ 1` of a layer whose block 0 the file holds
/// (else an error names the file and the tensor). Each added block's last batch norm (`bn2`)
/// gets γ = β = 0, so its residual branch outputs 0 and the block passes its input through
/// (`relu(0 + x) = x`, since x is the previous block's ReLU output); the deepened net starts
/// with the file's function ("zero-init residual", Goyal et al. 2017), and the gradient of γ
/// is not zero, so the branch starts learning at once. Returns the number of added blocks.
fn added_blocks(vars: &VarSource, store: &WeightStore) -> Result<usize> {
    let mut blocks = std::collections::BTreeSet::new();
    for (name, var) in vars.vars() {
        if store.contains(&name) {
            continue;
        }
        let Some((block, rest)) = added_block(&name, store) else {
            bail!(
                "{}: holds no tensor {name}; a deeper preset may only add blocks after a level's first",
                store.path().display()
            );
        };
        if rest == "bn2.weight" || rest == "bn2.bias" {
            var.set(&var.as_tensor().zeros_like()?)?;
        }
        blocks.insert(block.to_string());
    }
    Ok(blocks.len())
}

/// `name` as `(LAYER.I, REST)` if it is a tensor of block I ≥ 1 of a layer whose block 0
/// `store` holds under the same REST (`seg.conv1_0.1.bn2.weight` → `seg.conv1_0.1`).
fn added_block<'n>(name: &'n str, store: &WeightStore) -> Option<(&'n str, &'n str)> {
    let parts: Vec<&str> = name.split('.').collect();
    (1..parts.len()).find_map(|k| {
        let i: usize = parts[k].parse().ok()?;
        let (layer, rest) = (parts[..k].join("."), parts[k + 1..].join("."));
        let first = format!("{layer}.0.{rest}");
        (i >= 1 && store.contains(&first)).then(|| {
            let block_len = layer.len() + 1 + parts[k].len();
            (&name[..block_len], &name[block_len + 1..])
        })
    })
}

/// The tensors of the final weights file: R from where stage 2 started, S from `seg_ckpt`.
pub fn final_tensors(from: SegStart, seg_ckpt: &Path) -> Result<BTreeMap<String, Tensor>> {
    let mut out = from.recon_tensors()?;
    out.extend(tensors_under(&Checkpoint::open(seg_ckpt)?.store, "var.", SEG_PREFIX)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Init;
    use std::sync::Arc;

    fn data(groups: &[(usize, f64)]) -> TrainData {
        let mut train = Vec::new();
        let mut gs = Vec::new();
        for (k, &(n, weight)) in groups.iter().enumerate() {
            let start = train.len();
            for i in 0..n {
                train.push(Sample {
                    name: format!("{k}/{i}"),
                    image: crate::image_io::Frame::new(1, 1, 1, vec![0.0]).unwrap(),
                    mask: None,
                });
            }
            gs.push(Group {
                name: k.to_string(),
                range: start..train.len(),
                weight,
            });
        }
        TrainData {
            train,
            groups: gs,
            val: vec![],
        }
    }

    #[test]
    fn the_pd_floor_names_the_sets_with_targets_below_it() {
        let m = |pd, targets| Metrics {
            pd,
            targets,
            ..Default::default()
        };
        let sets = [m(0.95, 97), m(0.75, 100), m(0.0, 0)];
        let names = ["sirst", "daub5", "backgrounds"];
        assert_eq!(below_pd_floor(&names, &sets, 0.9), vec!["daub5"]);
        assert_eq!(below_pd_floor(&names, &sets, 0.96), vec!["sirst", "daub5"]);
        // A target-free set has no Pd to judge; a floor of 0 is off.
        assert!(below_pd_floor(&names, &sets, 0.0).is_empty());
        assert!(below_pd_floor(&names, &sets, 0.5).is_empty());
    }

    #[test]
    fn a_net_that_marks_nothing_is_recognised() {
        let m = |hits, false_targets| Metrics {
            hits,
            false_targets,
            targets: 10,
            ..Default::default()
        };
        assert!(marks_nothing(&[m(0, 0), m(0, 0)]));
        assert!(!marks_nothing(&[m(0, 0), m(0, 1)]), "one false target is a mark");
        assert!(!marks_nothing(&[m(1, 0), m(0, 0)]), "one hit is a mark");
        assert!(!marks_nothing(&[]), "no validation sets: nothing to judge");
    }

    #[test]
    fn validation_counts_pixels_above_the_probability_threshold() {
        // logit(0.95) = ln 19 ≈ 2.944: 2.9 is p ≈ 0.948, 3.0 is p ≈ 0.953.
        let z = [-1.0, 0.0, 0.1, 2.9, 3.0];
        assert_eq!(
            target_pixels(&z, 5, 1, TargetRule::plain(0.5)),
            [false, false, true, true, true]
        );
        assert_eq!(
            target_pixels(&z, 5, 1, TargetRule::plain(0.95)),
            [false, false, false, false, true]
        );
        // As `srsnet eval`'s strict `p > t`: a logit of 0 (p = 0.5 exactly) is not above 0.5.
        assert_eq!(target_pixels(&[0.0], 1, 1, TargetRule::plain(0.5)), [false]);
    }

    /// A target-free, textured 64×64 sample.
    fn textured_background() -> Sample {
        let pixels = (0..64 * 64)
            .map(|i| 0.3 + 0.2 * ((i * 7919 % 97) as f32 / 97.0))
            .collect();
        Sample {
            name: "bg".into(),
            image: Frame::new(64, 64, 1, pixels).unwrap(),
            mask: Some(vec![0.0; 64 * 64]),
        }
    }

    #[test]
    fn crops_on_mined_false_targets_get_no_synthetic_targets() {
        // A target-free, textured 64×64 frame, one mined false target at its centre.
        let sample = textured_background();
        let pool = [HardNegative {
            sample: 0,
            x: 32,
            y: 32,
        }];
        let augment = AugmentConfig {
            crop: Some(32),
            target_bias: 0.8,
            rotate_flip: true,
            synthesis: Synthesis {
                targets: 1.0,
                ..Synthesis::default()
            },
        };
        let labelled = |share: f64| {
            (0..20)
                .filter(|&index| {
                    let (img, mask) = training_crop(
                        std::slice::from_ref(&sample),
                        0,
                        (5, 1, index),
                        &augment,
                        (share, &pool),
                        false,
                    );
                    assert_eq!((img.width, img.height), (32, 32));
                    mask.is_some_and(|m| m.iter().any(|&v| v > 0.0))
                })
                .count()
        };
        // Ordinary crops all get their pasted targets; crops on the mined spot none.
        assert_eq!(labelled(0.0), 20);
        assert_eq!(labelled(1.0), 0);
    }

    #[test]
    fn a_motion_models_crops_carry_their_targets_motion_and_half_are_still() {
        let sample = textured_background();
        let augment = AugmentConfig {
            crop: Some(32),
            target_bias: 0.0,
            rotate_flip: true,
            synthesis: Synthesis {
                targets: 1.0,
                ..Synthesis::default()
            },
        };
        let (mut still, mut moving_at_target) = (0, Vec::new());
        for index in 0..60 {
            let data = std::slice::from_ref(&sample);
            let (img, mask) = training_crop(data, 0, (5, 1, index), &augment, (0.0, &[]), true);
            let single = training_crop(data, 0, (5, 1, index), &augment, (0.0, &[]), false);
            assert_eq!(img.channels, 2);
            assert_eq!(
                img.plane(0),
                single.0.plane(0),
                "the image is what a single-frame run draws"
            );
            assert_eq!(mask, single.1);
            let (m, mask) = (img.plane(1), mask.unwrap());
            if m.iter().all(|&v| v == 0.0) {
                still += 1;
                continue;
            }
            let at_target = m.iter().zip(&mask).filter(|(_, &t)| t > 0.5).map(|(v, _)| *v);
            moving_at_target.push(at_target.fold(f32::MIN, f32::max));
        }
        assert!((20..=40).contains(&still), "{still} of 60 still");
        // Most pasted targets moved (one in five hovers): new contrast where they are now.
        let new = moving_at_target.iter().filter(|&&v| v > 0.05).count();
        assert!(new * 10 >= moving_at_target.len() * 6, "{moving_at_target:?}");
    }

    #[test]
    fn a_motion_plane_added_with_zero_stem_weights_leaves_the_shipped_function_unchanged() {
        use crate::engine::{CpuEngine, Isa};
        use crate::model::weights_file::WeightsFile;
        use crate::model::Srsnet;
        let file = WeightsFile::open(Path::new("models/srsnet-lite.safetensors")).unwrap();
        let motion = ModelConfig {
            motion_channel: true,
            ..file.config.clone()
        };
        let vars = VarSource::strict(file.store.clone(), 3);
        stem_with_motion(&vars, &file.store, &motion).unwrap();
        let stored = Weights::new(file.store.clone(), DType::F32, &Device::Cpu);
        let widened = Weights::from_vars(vars, DType::F32, &Device::Cpu);
        let base = Srsnet::load(&stored.pp("recon"), &stored.pp("seg"), &file.config).unwrap();
        let wide = Srsnet::load(&stored.pp("recon"), &widened.pp("seg"), &motion).unwrap();
        let (h, w) = (48, 64);
        let image = Tensor::randn(0f32, 1.0, (1, 1, h, w), &Device::Cpu).unwrap();
        let moving = Tensor::randn(0f32, 2.0, (1, 1, h, w), &Device::Cpu).unwrap();
        let both = Tensor::cat(&[&image, &moving], 1).unwrap();
        let plane = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expected = plane(base.forward(&image).unwrap());
        let got = plane(wide.forward(&both).unwrap());
        let worst = expected
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "graph: logits differ by {worst}");
        // The plan engine too: R reads the image plane, S both.
        let mut engine = CpuEngine::new(1, Isa::best()).unwrap();
        let mut z = vec![0.0; h * w];
        engine.forward(&wide, &plane(both), h, w, &mut z).unwrap();
        let worst = expected.iter().zip(&z).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "plan: logits differ by {worst}");
        assert!(expected.iter().any(|&v| v.abs() > 1.0), "the net computes something");
    }

    #[test]
    fn decoys_are_fixed_in_the_scene_and_left_out_of_the_mask() {
        let sample = textured_background();
        let augment = AugmentConfig {
            crop: Some(32),
            target_bias: 0.0,
            rotate_flip: false,
            synthesis: Synthesis {
                decoys: 1.0,
                ..Synthesis::default()
            },
        };
        let data = std::slice::from_ref(&sample);
        let mut moving = 0;
        for index in 0..40 {
            let (img, mask) = training_crop(data, 0, (5, 1, index), &augment, (0.0, &[]), true);
            let (plain, _) = training_crop(data, 0, (5, 1, index), &augment, (0.0, &[]), false);
            assert!(
                mask.is_none_or(|m| m.iter().all(|&v| v == 0.0)),
                "decoys are background"
            );
            let m = img.plane(1);
            if m.iter().all(|&v| v == 0.0) {
                assert_eq!(img.plane(0), plain.plane(0), "a still crop gets no decoy");
                continue;
            }
            moving += 1;
            // Where decoys raised the image, their contrast cancels in the motion plane: they
            // were at the same place of the scene K frames ago.
            let raised: Vec<(f32, f32)> = (0..m.len())
                .map(|i| (img.plane(0)[i] - plain.plane(0)[i], m[i].abs()))
                .filter(|&(rise, _)| rise > 0.05)
                .collect();
            assert!(
                !raised.is_empty(),
                "crop {index}: every moving crop gets decoys at share 1"
            );
            let (rise, left): (f32, f32) = raised.iter().fold((0.0, 0.0), |(a, b), (r, l)| (a + r, b + l));
            assert!(left < 0.5 * rise, "crop {index}: {left} of {rise} left in the plane");
        }
        assert!(moving >= 10, "{moving} moving crops of 40");
    }

    #[test]
    fn weights_set_how_often_each_group_is_drawn() {
        let d = data(&[(10, 1.0), (20, 0.5), (4, 2.5)]);
        let order = epoch_order(&d, 7, 3);
        assert_eq!(order.len(), 10 + 10 + 10);
        let count = |r: std::ops::Range<usize>| order.iter().filter(|&&i| r.contains(&i)).count();
        assert_eq!((count(0..10), count(10..30), count(30..34)), (10, 10, 10));
        assert_eq!(order, epoch_order(&d, 7, 3), "deterministic per (seed, epoch)");
        assert_ne!(order, epoch_order(&d, 7, 4));
        let mut half: Vec<_> = epoch_order(&d, 7, 4)
            .into_iter()
            .filter(|i| (10..30).contains(i))
            .collect();
        half.sort();
        half.dedup();
        assert_eq!(half.len(), 10, "the half-weight group draws distinct samples");
    }

    #[test]
    fn one_group_of_weight_one_is_a_plain_shuffle() {
        let d = data(&[(12, 1.0)]);
        let mut old: Vec<usize> = (0..12).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5u64.wrapping_add(1_000_003 * 2));
        old.shuffle(&mut rng);
        assert_eq!(
            epoch_order(&d, 5, 2),
            old,
            "runs before groups existed resume unchanged"
        );
    }

    #[test]
    fn a_resume_on_another_instruction_set_is_told_it_is_not_exact() {
        let note = other_isa_warning(Some("avx2"), "avx512").unwrap();
        assert!(
            note.contains("ran avx2") && note.contains("run avx512") && note.contains("not bit for bit"),
            "{note}"
        );
        assert_eq!(other_isa_warning(Some("avx512"), "avx512"), None);
        assert_eq!(other_isa_warning(None, "avx512"), None, "checkpoints before the record");
        // Such checkpoints still read.
        let old: checkpoint::RunState = serde_json::from_str(
            r#"{"stage":"seg","epoch":1,"batch":0,"step":5,"max_steps":10,"best_score":null,"best_epoch":null}"#,
        )
        .unwrap();
        assert_eq!(old.isa, None);
    }

    /// The shipped weights' S as a stage, built by `vars` on `cfg`.
    fn seg_stage(file: &WeightsFile, vars: Arc<VarSource>, cfg: &ModelConfig) -> SegStage {
        let w = Weights::from_vars(vars.clone(), DType::F32, &Device::Cpu).pp(SEG_PREFIX);
        let rw = Weights::new(file.store.clone(), DType::F32, &Device::Cpu).pp(RECON_PREFIX);
        SegStage::new(&w, vars, &rw, cfg, SgdConfig::default(), 10).unwrap()
    }

    #[test]
    fn a_deepened_net_starts_with_the_function_of_the_file_it_deepens() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/srsnet-lite.safetensors");
        let file = WeightsFile::open(&path).unwrap();
        // Whatever preset ships: levels 1-3 gain 1, 2 and 1 blocks.
        let mut deeper = file.config.clone();
        for (b, more) in deeper.seg.blocks.iter_mut().zip([0, 1, 2, 1]) {
            *b += more;
        }
        let base = seg_stage(&file, VarSource::strict(file.store.clone(), 1), &file.config);
        let vars = VarSource::new(Some(file.store.clone()), 1);
        let deep = seg_stage(&file, vars.clone(), &deeper);
        // Levels 1-3 gain 1, 2 and 1 blocks in each of their 3, 2 and 1 layers.
        assert_eq!(added_blocks(&vars, &file.store).unwrap(), 3 + 2 * 2 + 1);
        let zero = |n: &str| {
            vars.var(n)
                .unwrap()
                .as_tensor()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
        };
        assert_eq!(zero("seg.conv2_0.2.bn2.weight").unwrap(), 0.0);
        assert!(
            zero("seg.conv2_0.2.CONV.weight").unwrap() > 0.0,
            "the branch's convs are initialised"
        );
        let x = Tensor::rand(0f32, 1f32, (1, 1, 64, 64), &Device::Cpu).unwrap();
        let (a, b) = (base.predict(&x).unwrap(), deep.predict(&x).unwrap());
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff < 1e-5,
            "the added blocks pass their input through: max logit difference {diff}"
        );
    }

    #[test]
    fn a_tensor_missing_outside_an_added_block_is_an_error_naming_it() {
        // A store holding block 0 of one layer only.
        let path = std::env::temp_dir().join(format!("srsnet-added-blocks-{}.safetensors", std::process::id()));
        let t = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&[("seg.l.0.bn2.weight".to_string(), t)].into(), &path).unwrap();
        let store = WeightStore::open(&path).unwrap();
        let vars = VarSource::new(Some(store.clone()), 1);
        let w = Weights::from_vars(vars.clone(), DType::F32, &Device::Cpu);
        for name in ["seg.l.0.bn2.weight", "seg.l.1.bn2.weight", "seg.l.2.bn2.weight"] {
            w.get(&[4], name, Init::Const(1.0)).unwrap();
        }
        assert_eq!(added_blocks(&vars, &store).unwrap(), 2);
        assert_eq!(
            vars.var("seg.l.2.bn2.weight")
                .unwrap()
                .as_tensor()
                .to_vec1::<f32>()
                .unwrap(),
            vec![0.0; 4]
        );
        // A tensor that is not in a block after one the store holds.
        w.get(&[4], "seg.head.weight", Init::Const(1.0)).unwrap();
        let err = added_blocks(&vars, &store).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            err.contains(&format!("{}: holds no tensor seg.head.weight", path.display()))
                && err.contains("after a level's first"),
            "{err}"
        );
    }
}
