//! `srsnet train recon|seg|all`: loading the data, running the stages, exporting the weights.

use crate::model::weights_file;
use crate::model::ModelConfig;
use crate::preprocess::{Geometry, PreprocessSpec};
use crate::train::augment::AugmentConfig;
use crate::train::data::{load_pairs, load_unlabeled, resize_sample, PairLayout, Sample, Skipped};
use crate::train::optim::SgdConfig;
use crate::train::trainer::{self, best_path, Outcome, TrainData, TrainOptions};
use anyhow::{bail, Result};
use candle_core::{DType, Device};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where the labelled data is.
#[derive(Debug, Clone)]
pub struct DataArgs {
    pub layout: PairLayout,
    pub train_split: Option<PathBuf>,
    pub val_split: Option<PathBuf>,
    pub recon_extra: Vec<PathBuf>,
}

impl DataArgs {
    /// The SIRST layout under `root`, with `splits/train.txt` and `splits/val.txt` when present.
    pub fn sirst(root: &Path) -> Self {
        let split = |n: &str| Some(root.join("splits").join(n)).filter(|p| p.exists());
        Self {
            layout: PairLayout::sirst(root),
            train_split: split("train.txt"),
            val_split: split("val.txt"),
            recon_extra: vec![],
        }
    }
}

/// Loaded data plus what was skipped.
pub struct Loaded {
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub extra: Vec<Sample>,
    pub skipped: Vec<Skipped>,
}

pub fn load(args: &DataArgs, channels: usize) -> Result<Loaded> {
    let train_names = args.layout.names(args.train_split.as_deref())?;
    let (train, mut skipped) = load_pairs(&args.layout, &train_names, channels);
    let val = match &args.val_split {
        Some(split) => {
            let (v, s) = load_pairs(&args.layout, &args.layout.names(Some(split))?, channels);
            skipped.extend(s);
            v
        }
        None => vec![],
    };
    let mut extra = Vec::new();
    for dir in &args.recon_extra {
        let (e, s) = load_unlabeled(dir, channels)?;
        extra.extend(e);
        skipped.extend(s);
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.name, s.reason);
    }
    if train.is_empty() {
        bail!(
            "no usable training pairs in {} ({} skipped)",
            args.layout.images.display(),
            skipped.len()
        );
    }
    Ok(Loaded {
        train,
        val,
        extra,
        skipped,
    })
}

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
    pub preset: String,
    pub epochs: usize,
    pub recon_epochs: usize,
    pub batch: usize,
    pub sgd: SgdConfig,
    pub seed: u64,
    pub size: usize,
    pub augment: AugmentConfig,
    pub val_every: usize,
    pub out: PathBuf,
    pub resume: bool,
    pub device: Device,
}

fn options(run: &RunArgs, config: &ModelConfig, preprocess: &PreprocessSpec, epochs: usize) -> TrainOptions {
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
    }
}

fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    // A second Ctrl-C while the checkpoint is being written is ignored; the write finishes.
    let _ = ctrlc::set_handler(move || {
        eprintln!(
            "\nstopping: finishing the current batch and writing a checkpoint (srsnet train ... --resume continues)"
        );
        s.store(true, Ordering::SeqCst);
    });
    stop
}

/// Which stages to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Recon,
    Seg,
    All,
}

/// Runs the requested stages; `recon` is the stage-1 checkpoint for `Which::Seg`.
pub fn run(which: Which, data_args: &DataArgs, run: &RunArgs, recon: Option<&Path>, weights_out: &Path) -> Result<()> {
    let config = ModelConfig::from_preset_or_path(&run.preset)?;
    let loaded = load(data_args, config.in_channels)?;
    let (mean, std) = intensity_stats(&loaded.train, config.in_channels);
    let preprocess = PreprocessSpec {
        channels: config.in_channels,
        mean,
        std,
        post_scale: 1.0,
        geometry: Geometry::Pad { multiple: 8 },
    };
    eprintln!(
        "{} training pairs, {} validation pairs, {} extra reconstruction images, {} skipped; normalisation mean {:?} std {:?}",
        loaded.train.len(),
        loaded.val.len(),
        loaded.extra.len(),
        loaded.skipped.len(),
        preprocess.mean,
        preprocess.std
    );
    let resized = |v: &[Sample]| -> Vec<Sample> { v.iter().map(|s| resize_sample(s, run.size)).collect() };
    let stop = stop_flag();
    let recon_ckpt = match which {
        Which::Seg => recon
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow::anyhow!("train seg needs --recon CHECKPOINT"))?,
        _ => best_path(&run.out, "recon"),
    };
    if which != Which::Seg {
        let mut train = resized(&loaded.train);
        train.extend(resized(&loaded.extra));
        let data = TrainData {
            train,
            val: loaded.val.clone(),
        };
        if trainer::train_recon(&options(run, &config, &preprocess, run.recon_epochs), &data, &stop)?
            == Outcome::Interrupted
        {
            return report_skipped(&loaded.skipped);
        }
    }
    if which != Which::Recon {
        let data = TrainData {
            train: resized(&loaded.train),
            val: loaded.val.clone(),
        };
        if trainer::train_seg(
            &options(run, &config, &preprocess, run.epochs),
            &data,
            &recon_ckpt,
            &stop,
        )? == Outcome::Interrupted
        {
            return report_skipped(&loaded.skipped);
        }
        export(
            &recon_ckpt,
            &best_path(&run.out, "seg"),
            &config,
            &preprocess,
            data_summary(data_args_json(data_args), run),
            weights_out,
        )?;
    }
    report_skipped(&loaded.skipped)
}

fn report_skipped(skipped: &[Skipped]) -> Result<()> {
    eprintln!("{} image/mask pairs were skipped (listed above)", skipped.len());
    Ok(())
}

fn data_args_json(d: &DataArgs) -> serde_json::Value {
    json!({
        "images": d.layout.images.display().to_string(),
        "masks": d.layout.masks.display().to_string(),
        "train_split": d.train_split.as_ref().map(|p| p.display().to_string()),
        "val_split": d.val_split.as_ref().map(|p| p.display().to_string()),
        "recon_extra": d.recon_extra.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

fn data_summary(data: serde_json::Value, run: &RunArgs) -> serde_json::Value {
    json!({
        "data": data,
        "epochs": run.epochs, "recon_epochs": run.recon_epochs, "batch": run.batch, "lr": run.sgd.lr,
        "momentum": run.sgd.momentum, "weight_decay": run.sgd.weight_decay, "seed": run.seed, "size": run.size,
        "crop": run.augment.crop,
    })
}

/// Writes the fp16 weights file from the best checkpoints, with the training record.
fn export(
    recon_ckpt: &Path,
    seg_ckpt: &Path,
    config: &ModelConfig,
    preprocess: &PreprocessSpec,
    mut info: serde_json::Value,
    out: &Path,
) -> Result<()> {
    let tensors = trainer::final_tensors(recon_ckpt, seg_ckpt)?;
    let seg = crate::train::checkpoint::Checkpoint::open(seg_ckpt)?;
    info["source"] = json!("srsnet train");
    info["seg_best_epoch"] = json!(seg.state.best_epoch);
    info["seg_best_val_iou"] = json!(seg.state.best_score);
    if let Some(dir) = seg_ckpt.parent() {
        let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap_or_default();
        let best = seg.state.best_epoch;
        if let Some(line) = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rev()
            .find(|v| v["stage"] == "seg" && v["epoch"].as_u64().map(|e| e as usize) == best)
        {
            info["val_metrics"] = line["val"].clone();
        }
    }
    weights_file::write(out, &tensors, config, preprocess, &info, DType::F16)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
