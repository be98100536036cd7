//! `srsnet train recon|seg|all`: loading the data, running the stages, exporting the weights.

use super::{parse_at_least_one, parse_batch, parse_non_negative, parse_positive};
use crate::device::DeviceSpec;
use crate::train::trainer::last_path;

use crate::dataset::labels::LabelRule;
use crate::model::weights_file;
use crate::model::weights_file::WeightsFile;
use crate::model::ModelConfig;
use crate::preprocess::{Geometry, PreprocessSpec};
use crate::stream::stop::Stop;
use crate::temporal::MotionInput;
use crate::train::augment::{AugmentConfig, StuckCount, StuckLabel, Synthesis};
use crate::train::data::{Sample, Skipped};
use crate::train::loss::{LossConfig, NegativeLoss};
use crate::train::optim::SgdConfig;
use crate::train::recipe::{self, DatasetSpec, Group, Recipe, Scale};
use crate::train::trainer::{self, best_path, Outcome, SegStart, TrainData, TrainOptions};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Per-channel mean and std of the training images: the weights file's normalisation.
pub fn intensity_stats(samples: &[Sample], channels: usize) -> (Vec<f32>, Vec<f32>) {
    (0..channels)
        .map(|c| {
            let (mut s, mut s2, mut n) = (0f64, 0f64, 0f64);
            for smp in samples {
                for &v in smp.image.plane(c) {
                    s += v as f64;
                    s2 += (v as f64).powi(2);
                    n += 1.0;
                }
            }
            let mean = s / n;
            let std = (s2 / n - mean * mean).max(1e-12).sqrt();
            (mean as f32, std as f32)
        })
        .unzip()
}

/// Options common to both stages.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Model preset or config file.
    pub preset: String,
    /// Segmentation-stage epochs.
    pub epochs: usize,
    /// Reconstruction-stage epochs.
    pub recon_epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Optimiser settings.
    pub sgd: SgdConfig,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Side the images are resized to.
    pub size: usize,
    /// How a motion preset's temporal plane is made (`--motion-lag`, `--motion-reach`).
    pub motion: MotionInput,
    /// Cropping and flips.
    pub augment: AugmentConfig,
    /// Validate every this many epochs.
    pub val_every: usize,
    /// Share of segmentation crops centred on mined false targets.
    pub hard_negatives: f64,
    /// The segmentation loss's costs beyond the reference's.
    pub loss: LossConfig,
    /// The probability threshold of the segmentation stage's validations.
    pub val_threshold: f64,
    /// The grow threshold of those validations (hysteresis), if any.
    pub val_grow: Option<f64>,
    /// The Pd floor an epoch must reach on every validation set with targets to be kept.
    pub val_min_pd: f64,
    /// Batches over which the BatchNorm statistics are re-estimated after every epoch.
    pub precise_bn: usize,
    /// The decay of the weight average that validation and the kept weights use, if any.
    pub ema: Option<f64>,
    /// Keep (and export) every validated epoch's weights.
    pub keep_epochs: bool,
    /// Export the epochs kept so far and stop, without training.
    pub export_kept: bool,
    /// Output folder (checkpoints, log.jsonl).
    pub out: PathBuf,
    /// Continue from the output folder's last checkpoint.
    pub resume: bool,
    /// Where training runs.
    pub device: Device,
}

fn options(run: &RunArgs, config: &ModelConfig, preprocess: &PreprocessSpec, epochs: usize) -> TrainOptions {
    // Synthetic targets and artefacts are for the segmentation stage; `train` clears them for R.
    TrainOptions {
        config: config.clone(),
        preprocess: preprocess.clone(),
        epochs,
        batch: run.batch,
        sgd: run.sgd,
        seed: run.seed,
        augment: run.augment,
        val_every: run.val_every,
        out_dir: run.out.clone(),
        resume: run.resume,
        progress: true,
        device: run.device.clone(),
        stop_after_batches: None,
        hard_negatives: run.hard_negatives,
        loss: run.loss,
        val_threshold: run.val_threshold,
        val_grow: run.val_grow,
        val_min_pd: run.val_min_pd,
        precise_bn: run.precise_bn,
        ema: run.ema,
        keep_epochs: run.keep_epochs,
    }
}

/// The trainer's stop signal: the first Ctrl-C lets the current batch finish and writes a
/// checkpoint; a second exits at once, and `--resume` continues from the last complete
/// checkpoint (the write-then-rename keeps it intact).
fn stop_signal() -> Stop {
    let stop = Stop::new();
    stop.on_ctrl_c(
        "stopping: finishing the current batch and writing a checkpoint (srsnet train ... --resume continues)",
    );
    stop
}

/// Which stages to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Stage 1 only.
    Recon,
    /// Stage 2 only (R from a stage-1 checkpoint).
    Seg,
    /// Both stages, then the weights file.
    All,
}

/// Where `train seg` takes its frozen reconstruction net from.
#[derive(Debug, Clone)]
pub enum SegFrom {
    /// A stage-1 checkpoint (`--recon`); S starts from a fresh initialisation.
    Recon(PathBuf),
    /// A weights file (`--init`): fine-tuning, R and S's first values both from it.
    Init(PathBuf),
}

/// How a fine-tune's model relates to the file it starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Widening {
    /// The same model.
    None,
    /// More of S's blocks per level ([`ModelConfig::deepens`]).
    Deeper,
    /// A motion plane added to S's input ([`ModelConfig::adds_motion`]).
    Motion,
}

/// The weights file to fine-tune from, checked against the preset the run names: the same
/// model, or one that the preset deepens or gives a motion plane.
fn open_init(path: &Path, config: &ModelConfig) -> Result<(WeightsFile, Widening)> {
    let file = WeightsFile::open(path).with_context(|| format!("--init {}", path.display()))?;
    if file.config == *config {
        return Ok((file, Widening::None));
    }
    if config.deepens(&file.config) {
        return Ok((file, Widening::Deeper));
    }
    if config.adds_motion(&file.config) {
        return Ok((file, Widening::Motion));
    }
    bail!(
        "--init {}: its model is `{}`, not the `{}` that --preset names, nor one that it deepens (the same \
         model with more of S's blocks per level) or gives a motion plane; pass --preset {} or a matching config",
        path.display(),
        file.config.name,
        config.name,
        file.config.name
    )
}

/// Runs the requested stages on the data `recipe` names; `seg_from` says where `Which::Seg`
/// starts. The recipe is saved in the run folder and in the weights' metadata.
pub fn train(
    which: Which,
    recipe: &Recipe,
    run: &RunArgs,
    seg_from: Option<&SegFrom>,
    weights_out: &Path,
) -> Result<()> {
    if run.export_kept && which != Which::Seg {
        bail!("--export-kept exports the kept epochs of a segmentation run: use it with `train seg`");
    }
    if run.resume {
        let stages: &[&str] = match which {
            Which::Recon => &["recon"],
            Which::Seg => &["seg"],
            Which::All => &["recon", "seg"],
        };
        if !stages.iter().any(|s| last_path(&run.out, s).exists()) {
            bail!(
                "--resume: no {} checkpoint in {} to continue from",
                stages.join(" or "),
                run.out.display()
            );
        }
    }
    let config = ModelConfig::from_preset_or_path(&run.preset)?;
    if run.augment.synthesis.decoys > 0.0 && !config.motion_channel {
        bail!(
            "--decoys {}: decoys are told from targets by the motion plane; preset `{}` takes none",
            run.augment.synthesis.decoys,
            config.name
        );
    }
    if config.motion_channel && which != Which::Seg {
        bail!(
            "preset `{}` takes a motion plane, which only S sees: train R with its single-frame preset, then \
             `train seg --init WEIGHTS` (or --recon) with this one",
            config.name
        );
    }
    let (recon_ckpt, init) = match (which, seg_from) {
        (Which::Seg, Some(SegFrom::Recon(p))) => (p.clone(), None),
        (Which::Seg, Some(SegFrom::Init(p))) => (p.clone(), Some(open_init(p, &config)?)),
        (Which::Seg, None) => bail!("train seg needs --recon CHECKPOINT or --init WEIGHTS"),
        _ => (best_path(&run.out, "recon"), None),
    };
    // A motion model fine-tuned keeps its file's motion plane; a new one takes the flags'.
    let motion = match &init {
        Some((file, Widening::None | Widening::Deeper)) => file.preprocess.motion,
        _ => config.motion_channel.then_some(run.motion),
    };
    let loaded = recipe::load(recipe, config.in_channels, run.size, &LabelRule::default(), motion)?;
    for s in &loaded.skipped {
        eprintln!("skipped {}: {}", s.name, s.reason);
    }
    let preprocess = match &init {
        // The frozen encoder and S's first values were trained on the file's normalisation
        // (and a motion model's on its file's motion plane).
        Some((file, Widening::Motion)) => PreprocessSpec {
            motion,
            ..file.preprocess.clone()
        },
        Some((file, _)) => file.preprocess.clone(),
        None => {
            let (mean, std) = intensity_stats(&loaded.seg, config.in_channels);
            PreprocessSpec {
                channels: config.in_channels,
                mean,
                std,
                post_scale: 1.0,
                geometry: Geometry::Pad { multiple: 8 },
                motion,
            }
        }
    };
    let seg_start = match &init {
        Some((file, Widening::None)) => SegStart::FineTune(file),
        Some((file, Widening::Deeper)) => SegStart::Deepen(file),
        Some((file, Widening::Motion)) => SegStart::AddMotion(file),
        None => SegStart::Recon(&recon_ckpt),
    };
    for g in &loaded.groups {
        eprintln!("train: {} ({} samples, weight {})", g.name, g.range.len(), g.weight);
    }
    for v in &loaded.val {
        eprintln!("validate: {} ({} inputs)", v.name, v.items.len());
    }
    eprintln!(
        "{} extra reconstruction images, {} skipped; normalisation mean {:?} std {:?}",
        loaded.recon_only.len(),
        loaded.skipped.len(),
        preprocess.mean,
        preprocess.std
    );
    std::fs::create_dir_all(&run.out).with_context(|| format!("creating {}", run.out.display()))?;
    crate::image_io::write_file(
        &run.out.join("recipe.json"),
        serde_json::to_string_pretty(&recipe.to_json())?.as_bytes(),
    )?;
    let stop = stop_signal();
    let mut val = loaded.val;
    if which != Which::Seg {
        // R trains on every image: the labelled and target-free ones and the unlabeled extras.
        let mut images = loaded.seg.clone();
        images.extend(loaded.recon_only);
        let mut data = TrainData::new(images, val);
        data.groups = loaded.groups.clone();
        if let Some(last) = data.groups.last().map(|g| g.range.end) {
            data.groups.push(Group {
                name: "unlabeled".into(),
                range: last..data.train.len(),
                weight: 1.0,
            });
        }
        let mut opts = options(run, &config, &preprocess, run.recon_epochs);
        opts.augment.synthesis = Synthesis::default();
        opts.hard_negatives = 0.0;
        if trainer::train_recon(&opts, &data, &stop)? == Outcome::Interrupted {
            return report_skipped(&loaded.skipped);
        }
        val = data.val;
    }
    if which == Which::Recon {
        return report_skipped(&loaded.skipped);
    }
    if run.export_kept {
        let summary = run_summary(recipe, run, &recon_ckpt, &init);
        export_kept_epochs(run, seg_start, (&config, &preprocess), &summary)?;
        return report_skipped(&loaded.skipped);
    }
    let data = TrainData {
        train: loaded.seg,
        groups: loaded.groups,
        val,
    };
    if trainer::train_seg(&options(run, &config, &preprocess, run.epochs), &data, seg_start, &stop)?
        == Outcome::Interrupted
    {
        return report_skipped(&loaded.skipped);
    }
    let summary = run_summary(recipe, run, &recon_ckpt, &init);
    export(
        seg_start,
        &best_path(&run.out, "seg"),
        None,
        (&config, &preprocess),
        summary.clone(),
        weights_out,
    )?;
    if run.keep_epochs {
        export_kept_epochs(run, seg_start, (&config, &preprocess), &summary)?;
    }
    report_skipped(&loaded.skipped)
}

/// The training record the weights' metadata carries: the data, the settings, and the file a
/// fine-tune started from.
fn run_summary(
    recipe: &Recipe,
    run: &RunArgs,
    recon_ckpt: &Path,
    init: &Option<(WeightsFile, Widening)>,
) -> serde_json::Value {
    let mut summary = data_summary(recipe.to_json(), run);
    if let Some((file, widening)) = init {
        summary["fine_tuned_from"] = json!({
            "file": recon_ckpt.display().to_string(),
            "info": file.info,
            "deepened_from": (*widening == Widening::Deeper).then_some(&file.config),
            "motion_added_to": (*widening == Widening::Motion).then_some(&file.config),
        });
    }
    summary
}

/// Writes OUT/srsnet-epochN.safetensors for every epoch `--keep-epochs` has kept.
fn export_kept_epochs(
    run: &RunArgs,
    seg_start: SegStart,
    model: (&ModelConfig, &PreprocessSpec),
    summary: &serde_json::Value,
) -> Result<()> {
    let epochs = trainer::kept_epochs(&run.out, "seg")?;
    if epochs.is_empty() {
        bail!("{}: no kept epoch to export yet", run.out.display());
    }
    for epoch in epochs {
        let ckpt = trainer::epoch_path(&run.out, "seg", epoch);
        let out = run.out.join(format!("srsnet-epoch{epoch}.safetensors"));
        export(seg_start, &ckpt, Some(epoch), model, summary.clone(), &out)?;
    }
    Ok(())
}

fn report_skipped(skipped: &[Skipped]) -> Result<()> {
    eprintln!("{} inputs were skipped (listed above)", skipped.len());
    Ok(())
}

fn data_summary(recipe: serde_json::Value, run: &RunArgs) -> serde_json::Value {
    json!({
        "recipe": recipe,
        "epochs": run.epochs, "recon_epochs": run.recon_epochs, "batch": run.batch, "lr": run.sgd.lr,
        "momentum": run.sgd.momentum, "weight_decay": run.sgd.weight_decay, "seed": run.seed, "size": run.size,
        "crop": run.augment.crop, "synthesis": run.augment.synthesis, "hard_negatives": run.hard_negatives,
        "negative_loss": run.loss.negative, "negative_weight": run.loss.negative_weight,
        "target_weight": run.loss.target_weight,
        "val_threshold": run.val_threshold, "val_grow": run.val_grow, "val_min_pd": run.val_min_pd,
        "precise_bn": run.precise_bn, "ema": run.ema,
    })
}

/// Writes the fp16 weights file from a stage-2 checkpoint, with the training record: the best
/// checkpoint (`epoch` None), or the one `--keep-epochs` kept of `epoch`.
fn export(
    from: SegStart,
    seg_ckpt: &Path,
    epoch: Option<usize>,
    (config, preprocess): (&ModelConfig, &PreprocessSpec),
    mut info: serde_json::Value,
    out: &Path,
) -> Result<()> {
    let tensors = trainer::final_tensors(from, seg_ckpt)?;
    let seg = crate::train::checkpoint::Checkpoint::open(seg_ckpt)?;
    info["source"] = json!("srsnet train");
    info["seg_best_epoch"] = json!(seg.state.best_epoch);
    info["seg_best_val_score"] = json!(seg.state.best_score);
    // No best epoch when none reached --val-min-pd: the weights are then the last epoch's.
    let kept = epoch.unwrap_or(seg.state.best_epoch.unwrap_or(seg.state.epoch));
    info["seg_kept_epoch"] = json!(kept);
    if let Some(dir) = seg_ckpt.parent() {
        let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap_or_default();
        if let Some(line) = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rev()
            .find(|v| v["stage"] == "seg" && v.get("val").is_some() && v["epoch"].as_u64() == Some(kept as u64))
        {
            info["val_metrics"] = line["val"].clone();
        }
    }
    weights_file::write(out, &tensors, config, preprocess, &info, DType::F16)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The stages of `srsnet train`.
#[derive(Debug, Subcommand)]
pub enum TrainStage {
    /// Stage 1: the reconstruction net on MSE(R(x), x).
    Recon(TrainArgs),
    /// Stage 2: the segmentation net, with R's encoder from --recon (or --init) frozen.
    Seg {
        /// Stage-1 checkpoint (OUT/recon-best.ckpt.safetensors).
        #[arg(long, required_unless_present = "init", conflicts_with = "init")]
        recon: Option<PathBuf>,
        /// Fine-tune: start from a weights file (e.g. the shipped one). Its R stays frozen, S
        /// starts from its values, and its normalisation is kept. --preset must match its model,
        /// or deepen it: the same model with more of S's blocks per level, each added block
        /// starting as the identity (so training starts from the file's function).
        #[arg(long)]
        init: Option<PathBuf>,
        #[command(flatten)]
        /// The options.
        args: TrainArgs,
    },
    /// Both stages, then the fp16 weights file.
    All(TrainArgs),
    /// The second stage for a weights file: a logistic model that judges each of its targets
    /// (see `verify`), fitted on a recipe's training sets and written with the weights.
    Verifier(VerifierArgs),
}

/// Options of `srsnet train verifier`.
#[derive(Debug, clap::Args)]
pub struct VerifierArgs {
    /// The weights whose targets it judges.
    #[arg(long)]
    pub weights: PathBuf,
    /// A recipe: the verifier is fitted on its training sets (its validation sets are not read).
    #[arg(long)]
    pub recipe: PathBuf,
    /// The weights file to write: the input's tensors, with the verifier and the rule it
    /// judges recorded as the operating point (never the input).
    #[arg(long)]
    pub out: PathBuf,
    /// The threshold whose targets it judges (default: the weights' operating point).
    #[arg(long, value_parser = super::parse_threshold)]
    pub threshold: Option<f32>,
    /// The grow threshold with it (`none` for plain; default: the weights' operating point).
    #[arg(long, value_parser = super::parse_grow)]
    pub grow: Option<super::Grow>,
    /// Share of the training sets' true targets its threshold keeps in cross-validation.
    #[arg(long, default_value_t = 0.98, value_parser = parse_probability)]
    pub keep: f64,
    /// Cross-validation folds (contiguous blocks of each set's frames).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=20))]
    pub folds: u64,
    /// L2 penalty on the standardised weights.
    #[arg(long, default_value_t = 1.0, value_parser = parse_positive)]
    pub l2: f64,
    /// Weigh each training set's rows by its recipe weight (default: every row counts 1).
    #[arg(long)]
    pub weigh_sets: bool,
    /// Leave this feature out of the model (its weight is 0); repeat for several. The names
    /// are those of `srsnet::verify::FEATURES`; an unknown one is refused with the list.
    #[arg(long = "without", value_name = "FEATURE")]
    pub without: Vec<String>,
    /// Boost this many depth-limited trees from the logistic model's log-odds (0: the logistic
    /// model alone); they learn the features' interactions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub trees: u64,
    /// Each tree's depth.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=8))]
    pub tree_depth: u64,
    /// Shrinkage of each tree's values.
    #[arg(long, default_value_t = 0.1, value_parser = parse_probability)]
    pub tree_rate: f64,
}

/// Runs `srsnet train verifier`.
fn train_verifier(args: VerifierArgs) -> Result<()> {
    refuse_overwrite_many(&[args.weights.as_path(), args.recipe.as_path()], &args.out)?;
    let used = crate::verify::without(&args.without).map_err(anyhow::Error::msg)?;
    let opts = crate::infer::EngineOptions {
        verify: false,
        ..Default::default()
    };
    let det = crate::infer::Detector::load(&args.weights, &Device::Cpu, opts)?;
    let rule = super::target_rule(args.threshold, args.grow, det.rule)?;
    let recipe = Recipe::from_file(&args.recipe)?.training_as_validation()?;
    let (sets, skipped) = recipe::load_validation(&recipe, det.channels())?;
    for s in &skipped {
        eprintln!("skipped {}: {}", s.name, s.reason);
    }
    let fit_opts = crate::train::verifier::FitOptions {
        rule,
        keep: args.keep,
        folds: args.folds as usize,
        model: crate::verify::ModelSpec {
            l2: args.l2,
            used,
            trees: crate::verify::trees::TreeOptions {
                rounds: args.trees as usize,
                depth: args.tree_depth as usize,
                rate: args.tree_rate,
            },
        },
    };
    let weighed: Vec<_> = sets
        .iter()
        .zip(&recipe.validation)
        .map(|(set, spec)| crate::train::verifier::WeighedSet {
            set,
            weight: if args.weigh_sets { spec.weight() } else { 1.0 },
        })
        .collect();
    let fitted = crate::train::verifier::fit(&det, &weighed, fit_opts)?;
    eprintln!("set\tframes\ttargets\thits\tfalse targets\tkept hits\tkept false targets (cross-validated)");
    for c in &fitted.sets {
        eprintln!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            c.name, c.frames, c.targets, c.hits, c.false_targets, c.kept.0, c.kept.1
        );
    }
    let file = WeightsFile::open(&args.weights)?;
    let mut info = file.info.clone();
    if !info.is_object() {
        info = json!({});
    }
    rule.record(&mut info);
    fitted.verifier.record(&mut info);
    let mut judged = json!({});
    rule.record(&mut judged);
    info["verifier_fit"] = json!({
        "judged_rule": judged,
        "recipe": recipe.to_json(),
        "rows": fitted.rows.len(),
        "hits": fitted.rows.iter().filter(|r| r.hit).count(),
        "keep": args.keep,
        "folds": args.folds,
        "l2": args.l2,
        "weigh_sets": args.weigh_sets,
        "features": crate::verify::FEATURES,
        "without": args.without,
        "trees": args.trees,
        "tree_depth": args.tree_depth,
        "tree_rate": args.tree_rate,
    });
    let tensors = file.tensors(DType::F32)?;
    weights_file::write(&args.out, &tensors, &file.config, &file.preprocess, &info, DType::F16)?;
    eprintln!(
        "wrote {} (verifier threshold {:.4} at {rule}, {} rows)",
        args.out.display(),
        fitted.verifier.threshold,
        fitted.rows.len()
    );
    Ok(())
}

/// Refuses an output that is one of the inputs.
fn refuse_overwrite_many(inputs: &[&Path], out: &Path) -> Result<()> {
    super::refuse_overwrite(inputs.iter().copied(), out)
}

/// Options common to every stage.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Dataset root in the SIRST layout (images/, masks/NAME_pixels0.png, splits/train.txt, splits/val.txt).
    #[arg(long, required_unless_present_any = ["images", "recipe", "dataset"])]
    pub data: Option<PathBuf>,
    /// A recipe file (JSON): training datasets with weights and validation sets (see
    /// `train::recipe`). Saved into OUT/recipe.json and the weights' metadata.
    #[arg(long, conflicts_with_all = ["data", "images"])]
    pub recipe: Option<PathBuf>,
    /// Add a training dataset: KIND:PATH[@WEIGHT] with KIND sirst, sequence, negatives or
    /// unlabeled (repeatable).
    #[arg(long, value_parser = DatasetSpec::parse_flag)]
    pub dataset: Vec<DatasetSpec>,
    /// Add a validation set: KIND:PATH (repeatable); used for selection only, never training.
    #[arg(long, value_parser = DatasetSpec::parse_flag)]
    pub val: Vec<DatasetSpec>,
    /// Generic layout: folder of images (with --masks and --mask-suffix).
    #[arg(long, requires = "masks")]
    pub images: Option<PathBuf>,
    #[arg(long)]
    /// Generic layout: folder of masks for --images.
    pub masks: Option<PathBuf>,
    #[arg(long, default_value = "")]
    /// Generic layout: appended to an image's NAME to name its mask.
    pub mask_suffix: String,
    #[arg(long, default_value = "png")]
    /// Generic layout: image and mask file extension.
    pub extension: String,
    /// Split files listing the NAMEs to train on and validate with.
    #[arg(long)]
    pub train_split: Option<PathBuf>,
    #[arg(long)]
    /// Split file of the NAMEs to validate with.
    pub val_split: Option<PathBuf>,
    /// Unlabeled image folders added to the reconstruction stage (repeatable).
    #[arg(long)]
    pub recon_extra: Vec<PathBuf>,
    #[arg(long, default_value = "lite")]
    /// Model preset (official, lite) or a config JSON file.
    pub preset: String,
    /// Segmentation-stage epochs.
    #[arg(long, default_value_t = 300, value_parser = parse_at_least_one)]
    pub epochs: usize,
    /// Reconstruction-stage epochs.
    #[arg(long, default_value_t = 100, value_parser = parse_at_least_one)]
    pub recon_epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 8, value_parser = parse_batch)]
    pub batch: usize,
    /// SGD learning rate.
    #[arg(long, default_value_t = 0.01, value_parser = parse_positive)]
    pub lr: f64,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, value_parser = parse_unit_open)]
    pub momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4, value_parser = parse_non_negative)]
    pub weight_decay: f64,
    /// Exponent of the poly learning-rate schedule.
    #[arg(long, default_value_t = 0.9, value_parser = parse_non_negative)]
    pub poly_power: f64,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 41)]
    pub seed: u64,
    /// Images are resized to SIZE×SIZE for training.
    #[arg(long, default_value_t = 256, value_parser = parse_train_side)]
    pub size: usize,
    /// Train on random CROP×CROP crops of the resized images (faster steps).
    #[arg(long, value_parser = parse_train_side)]
    pub crop: Option<usize>,
    /// Probability that a crop is placed around a target.
    #[arg(long, default_value_t = 0.8, value_parser = parse_unit_closed)]
    pub target_bias: f64,
    /// Disable the random rot90 and flips.
    #[arg(long)]
    pub no_augment: bool,
    /// Probability that a segmentation crop gets 1–3 synthetic targets pasted in (point and
    /// extended, signal-to-clutter 2–8, some smeared), with exact masks.
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_closed)]
    pub synthetic_targets: f64,
    /// Probability that a segmentation crop gets a sensor artefact (dead/hot row or column, stuck pixels,
    /// stripe noise) that must stay background.
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_closed)]
    pub artefacts: f64,
    /// Probability that a segmentation crop gets 1–6 isolated stuck pixels (dark or bright),
    /// drawn on its own rather than as one --artefacts kind in five.
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_closed)]
    pub stuck_pixels: f64,
    /// What the mask says at every stuck pixel (of both draws) and its 8 neighbours:
    /// background (the net learns to reject lone full-scale pixels, DAUB's aircraft with them)
    /// or ignored (no loss there: it learns only not to let them disturb the targets beside them).
    #[arg(long, value_enum, default_value_t = StuckLabel::Background)]
    pub stuck_label: StuckLabel,
    /// How many stuck pixels a draw puts in a crop: 1–6 per crop (per-crop), or 1–6 per 128²
    /// of crop (per-area: the same density in whole 256² tiles as in 128² crops).
    #[arg(long, value_enum, default_value_t = StuckCount::PerCrop)]
    pub stuck_count: StuckCount,
    /// For a motion preset: the probability (0–1) that a moving crop gets 1–3 decoys, target-like
    /// blobs fixed in the scene and labelled background (and no synthetic target then
    /// hovers): teaches the net that a point holding still against a panning scene is clutter,
    /// at the cost the motion gate pays for hovering targets (models/README.md, `diag-motion`).
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_closed)]
    pub decoys: f64,
    /// Validate every this many epochs (and after the last).
    #[arg(long, default_value_t = 1, value_parser = parse_at_least_one)]
    pub val_every: usize,
    /// Share of segmentation crops (0–1) placed around a false target that the current net
    /// raises on the training set, instead of drawn as usual. The false targets are mined
    /// again at the start of every --val-every-th epoch (a pass of the net over every training
    /// sample). Needs --crop.
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_closed)]
    pub hard_negatives: f64,
    /// What a target-free crop costs besides its share of the BCE: `mass`, its predicted mass
    /// Σp/(64 + Σp); or `logits`, its summed BCE over 64, which does not saturate on confident
    /// false targets (`src/train/loss.rs`). Crops with a target keep the reference's loss.
    #[arg(long, value_enum, default_value_t = NegativeLoss::Mass)]
    pub negative_loss: NegativeLoss,
    /// Weight of a target-free crop's --negative-loss cost against a target crop's Dice (1:
    /// equal; below 1 a milder push against false targets, which costs fewer dim targets).
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative)]
    pub negative_weight: f64,
    /// Weight of the per-target loss (0: off, the reference's loss): for each labelled target,
    /// the mean BCE of its own pixels, averaged over a crop's targets, so that a 2-px target
    /// counts as much as a 200-px one and a target marked only at its core pays for the rest
    /// (`src/train/loss.rs`). It charges missed target pixels only, never false ones.
    #[arg(long, default_value_t = 0.0, value_parser = parse_non_negative)]
    pub target_weight: f64,
    /// Probability above which the segmentation stage's validations count a pixel as target;
    /// the best checkpoint is chosen at it (use the threshold the weights will be run at).
    #[arg(long, default_value_t = 0.5, value_parser = parse_probability)]
    pub val_threshold: f64,
    /// Grow each validation target from its pixels above --val-threshold over its connected
    /// pixels above this (the hysteresis of `eval --grow`; at most --val-threshold), so that
    /// the checkpoint is chosen by the rule the weights will run with.
    #[arg(long, value_parser = parse_probability)]
    pub val_grow: Option<f64>,
    /// An epoch whose Pd on any validation set with targets is below this is not kept as the
    /// best checkpoint, whatever its score (0: off); if none reaches it, the last epoch is.
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_closed)]
    pub val_min_pd: f64,
    /// After every epoch, replace the BatchNorm running statistics by their plain mean over
    /// the epoch's first N batches (PreciseBN; 0: off). Validation, mining and the weights then
    /// see statistics of N·batch crops rather than the last ten or so batches' average.
    #[arg(long, default_value_t = 0)]
    pub precise_bn: usize,
    /// Keep an exponential moving average of the weights with this decay per step (e.g.
    /// 0.998: about the last 500 steps), and validate, keep and export the average instead of
    /// the raw weights, which SGD goes on stepping. Smooths the epoch-to-epoch swings of
    /// fine-tuning; `--resume` continues it exactly.
    #[arg(long, value_parser = parse_probability)]
    pub ema: Option<f64>,
    /// Keep every validated epoch's weights, not only the best and the last: the checkpoint
    /// OUT/seg-epochN.ckpt.safetensors, and at the end the weights file OUT/srsnet-epochN.safetensors.
    #[arg(long)]
    pub keep_epochs: bool,
    /// With --resume and --keep-epochs: write OUT/srsnet-epochN.safetensors for every epoch the
    /// unfinished run has kept so far, and stop without training, so that a run spanning
    /// sessions can be swept with `srsnet eval` before it ends (the same command resumes it).
    #[arg(long, requires_all = ["resume", "keep_epochs"])]
    pub export_kept: bool,
    /// Output folder: checkpoints, log.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Final weights file (default OUT/srsnet.safetensors).
    #[arg(long)]
    pub weights_out: Option<PathBuf>,
    /// Continue from OUT's last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// For a motion preset (`"motion_channel": true`): the frames back each frame is compared
    /// with (models/README.md, "The temporal input"). Stored in the weights; a fine-tune of a
    /// motion model keeps its file's.
    #[arg(long, default_value_t = MotionInput::DEFAULT.lag)]
    pub motion_lag: usize,
    /// For a motion preset: the largest scene shift per frame the registration follows, px.
    #[arg(long, default_value_t = MotionInput::DEFAULT.reach)]
    pub motion_reach: usize,
}

impl TrainArgs {
    /// The recipe these arguments describe: `--recipe`, else `--data` (the SIRST layout with
    /// its train/val splits) or `--images`/`--masks`, plus `--recon-extra`, `--dataset` and `--val`.
    pub fn recipe(&self) -> Result<Recipe> {
        let mut r = match &self.recipe {
            Some(p) => Recipe::from_file(p)?,
            None => Recipe::default(),
        };
        let split_of = |root: &Path, given: &Option<PathBuf>, default: &str| -> Option<PathBuf> {
            given
                .clone()
                .or_else(|| Some(PathBuf::from("splits").join(default)).filter(|s| root.join(s).exists()))
        };
        if let Some(root) = &self.data {
            r.train.push(DatasetSpec::Sirst {
                root: root.clone(),
                split: split_of(root, &self.train_split, "train.txt"),
                weight: 1.0,
                scale: Scale::Resize,
            });
            if let Some(split) = split_of(root, &self.val_split, "val.txt") {
                r.validation.push(DatasetSpec::Sirst {
                    root: root.clone(),
                    split: Some(split),
                    weight: 1.0,
                    scale: Scale::Resize,
                });
            }
        }
        if let (Some(images), Some(masks)) = (&self.images, &self.masks) {
            let pairs = |split: &Option<PathBuf>| DatasetSpec::Pairs {
                images: images.clone(),
                masks: masks.clone(),
                mask_suffix: self.mask_suffix.clone(),
                extension: self.extension.clone(),
                split: split.clone(),
                weight: 1.0,
                scale: Scale::Resize,
            };
            r.train.push(pairs(&self.train_split));
            if self.val_split.is_some() {
                r.validation.push(pairs(&self.val_split));
            }
        }
        r.train.extend(
            self.recon_extra
                .iter()
                .map(|d| DatasetSpec::Unlabeled { dir: d.clone() }),
        );
        r.train.extend(self.dataset.iter().cloned());
        r.validation.extend(self.val.iter().cloned());
        r.check()?;
        Ok(r)
    }

    /// The recipe, run options and final weights path these arguments name.
    pub fn split(self) -> Result<(Recipe, RunArgs, PathBuf)> {
        if self.hard_negatives > 0.0 && self.crop.is_none() {
            bail!(
                "--hard-negatives {} needs --crop: crops are what it places around false targets",
                self.hard_negatives
            );
        }
        crate::train::trainer::validation_rule(self.val_threshold, self.val_grow)?;
        MotionInput {
            lag: self.motion_lag,
            reach: self.motion_reach,
        }
        .validate()?;
        let data = self.recipe()?;
        let weights_out = self
            .weights_out
            .clone()
            .unwrap_or_else(|| self.out.join("srsnet.safetensors"));
        let run = RunArgs {
            preset: self.preset,
            epochs: self.epochs,
            recon_epochs: self.recon_epochs,
            batch: self.batch,
            sgd: SgdConfig {
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                poly_power: self.poly_power,
            },
            seed: self.seed,
            size: self.size,
            motion: MotionInput {
                lag: self.motion_lag,
                reach: self.motion_reach,
            },
            augment: AugmentConfig {
                crop: self.crop,
                target_bias: self.target_bias,
                rotate_flip: !self.no_augment,
                synthesis: Synthesis {
                    targets: self.synthetic_targets,
                    artefacts: self.artefacts,
                    stuck_pixels: self.stuck_pixels,
                    stuck_label: self.stuck_label,
                    stuck_count: self.stuck_count,
                    decoys: self.decoys,
                },
            },
            val_every: self.val_every,
            hard_negatives: self.hard_negatives,
            loss: LossConfig {
                negative: self.negative_loss,
                negative_weight: self.negative_weight,
                target_weight: self.target_weight,
            },
            val_threshold: self.val_threshold,
            val_grow: self.val_grow,
            val_min_pd: self.val_min_pd,
            precise_bn: self.precise_bn,
            ema: self.ema,
            keep_epochs: self.keep_epochs,
            export_kept: self.export_kept,
            out: self.out,
            resume: self.resume,
            device: self.device.open()?,
        };
        Ok((data, run, weights_out))
    }
}

/// Runs `srsnet train STAGE`.
pub fn run(stage: TrainStage) -> Result<()> {
    let (which, args, seg_from) = match stage {
        TrainStage::Recon(a) => (Which::Recon, a, None),
        TrainStage::Seg { recon, init, args } => {
            let from = match (recon, init) {
                (_, Some(init)) => SegFrom::Init(init),
                (Some(recon), None) => SegFrom::Recon(recon),
                (None, None) => bail!("train seg needs --recon CHECKPOINT or --init WEIGHTS"),
            };
            (Which::Seg, args, Some(from))
        }
        TrainStage::All(a) => (Which::All, a, None),
        TrainStage::Verifier(a) => return train_verifier(a),
    };
    if let Some(crop) = args.crop {
        if crop > args.size {
            bail!("--crop {crop} is larger than the training size --size {}", args.size);
        }
    }
    let (data, run, weights_out) = args.split()?;
    if let Some(SegFrom::Init(init)) = &seg_from {
        super::refuse_overwrite([init.as_path()], &weights_out)?;
    }
    crate::heap::retain_freed_memory();
    train(which, &data, &run, seg_from.as_ref(), &weights_out)
}

/// A training side: a positive multiple of 8 up to 4096.
fn parse_train_side(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 && n % 8 == 0 && n <= 4096 => Ok(n),
        _ => Err(format!("`{s}`: expected a positive multiple of 8 up to 4096")),
    }
}

/// A number in [0, 1).
fn parse_unit_open(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: expected a number in [0, 1)")),
    }
}

/// A number strictly between 0 and 1.
fn parse_probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("`{s}`: expected a probability strictly between 0 and 1")),
    }
}

/// A number in [0, 1].
fn parse_unit_closed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: expected a number in [0, 1]")),
    }
}
