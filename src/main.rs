//! `srsnet`: the command-line front end. Parsing and wiring only; behaviour lives in the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use srsnet::cli;
use srsnet::device::parse_device;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "srsnet",
    version,
    about = "SRSNet infrared small-target segmentation runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment image files: a mask PNG and a JSON target list per image.
    Infer {
        /// Weights file (default: the shipped models/srsnet-lite.safetensors).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Pixels with target probability above this are target (default: the weights' recorded
        /// operating point, else 0.5).
        #[arg(long)]
        threshold: Option<f32>,
        /// Output folder for `NAME_mask.png` and `NAME.json`.
        #[arg(long, default_value = "srsnet-out")]
        out: PathBuf,
        /// PNG, BMP, TIFF or JPEG files; 8 or 16 bit; gray, RGB, RGBA or palette.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Convert reference checkpoints (SRS_R and SRS_S state dicts as safetensors) to one weights file.
    Import {
        #[arg(long)]
        recon: PathBuf,
        #[arg(long)]
        seg: PathBuf,
        /// Model preset (official, lite) or a config JSON file.
        #[arg(long, default_value = "official")]
        preset: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "f16")]
        dtype: String,
    },
    /// Rewrite a weights file in f16 or f32, optionally also as reference-named state dicts.
    Export {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "f16")]
        dtype: String,
        /// Also write recon.safetensors and seg.safetensors with the reference's names here.
        #[arg(long)]
        reference_dir: Option<PathBuf>,
        /// Record this probability threshold as the weights' operating point.
        #[arg(long)]
        threshold: Option<f32>,
    },
    /// Write an untrained (PyTorch-default initialised) weights file for a preset.
    Init {
        #[arg(long, default_value = "lite")]
        preset: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 41)]
        seed: u64,
        #[arg(long, default_value = "f16")]
        dtype: String,
    },
    /// Train SRSNet: `recon` (stage 1), `seg` (stage 2, R frozen) or `all` (both, then export).
    Train {
        #[command(subcommand)]
        stage: TrainStage,
    },
    /// Score a model (or mask files, or a centroid-annotated sequence) with IoU, nIoU, F1, Pd, Fa.
    Eval {
        /// Weights file (default: the shipped weights).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// `net` (SRSNet weights) or `tophat` (the training-free baseline).
        #[arg(long, default_value = "net")]
        model: String,
        /// Labelled set in the SIRST layout.
        #[arg(long, conflicts_with_all = ["pred", "sequence"])]
        data: Option<PathBuf>,
        /// Split file of NAMEs (default: every image).
        #[arg(long)]
        split: Option<PathBuf>,
        /// Folder of prediction masks to score against --gt.
        #[arg(long, requires = "gt")]
        pred: Option<PathBuf>,
        #[arg(long)]
        gt: Option<PathBuf>,
        /// Suffix of ground-truth mask names (NAME{suffix}.png).
        #[arg(long, default_value = "")]
        gt_suffix: String,
        /// A sequence folder with frames/ and centroids.csv (Pd/Fa by the 3-pixel centroid rule).
        #[arg(long)]
        sequence: Option<PathBuf>,
        /// Probability threshold (default: the weights' recorded operating point, else 0.5).
        #[arg(long)]
        threshold: Option<f32>,
        /// Score several thresholds in one pass (comma-separated), e.g. 0.5,0.7,0.9.
        #[arg(long, value_delimiter = ',')]
        sweep: Vec<f32>,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The streaming pipeline: camera, folder, raw recording or synthetic frames → targets.
    Run(RunCli),
    /// Build a calibration profile (two-point NUC + bad pixels) from cold and hot flat fields.
    Calibrate {
        /// Cold flat-field recording: raw:FILE or a folder of images.
        #[arg(long)]
        cold: String,
        /// Hot flat-field recording.
        #[arg(long)]
        hot: String,
        #[arg(long, value_parser = cli::run::parse_size)]
        size: Option<(usize, usize)>,
        #[arg(long, default_value = "y16")]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write synthetic IR frames (PNG) and their target positions (truth.csv).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, value_parser = cli::run::parse_size, default_value = "320x256")]
        size: (usize, usize),
        #[arg(long, default_value_t = 8)]
        bits: u8,
        #[arg(long, default_value_t = 2)]
        targets: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Write flat fields of this level in [0, 1] instead (for `srsnet calibrate`).
        #[arg(long)]
        flat: Option<f32>,
    },
    /// Print a weights file's config, preprocessing and provenance.
    Info { weights: PathBuf },
    /// Time one forward pass (R encoder + S) on a square frame.
    Bench {
        /// Weights file; without it, an untrained model of --preset is timed.
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value = "lite")]
        preset: String,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Time training steps of this stage (recon or seg) instead of inference.
        #[arg(long)]
        train: Option<String>,
        /// Batch size for --train.
        #[arg(long, default_value_t = 8)]
        batch: usize,
    },
}

#[derive(clap::Args)]
struct RunCli {
    /// synthetic | DIR | folder:DIR (DAUB layout: frames/ + centroids.csv) | raw:FILE | v4l:/dev/videoN
    #[arg(long, default_value = "synthetic")]
    source: String,
    /// Weights file (default: the shipped weights).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// `net` or `tophat[:SE:K]`.
    #[arg(long, default_value = "net")]
    model: String,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Frame size: required for raw files; requested from cameras; synthetic frame size (default 320x256).
    #[arg(long, value_parser = cli::run::parse_size)]
    size: Option<(usize, usize)>,
    /// raw: y8 | y16 (default y16); camera: grey | y16 | yuyv.
    #[arg(long)]
    format: Option<String>,
    /// Replay rate (default: as fast as possible); camera: requested frame rate.
    #[arg(long)]
    fps: Option<f64>,
    /// Repeat a folder or raw recording forever.
    #[arg(long = "loop")]
    looping: bool,
    /// Synthetic frames to generate (default 30; 0 = endless).
    #[arg(long)]
    count: Option<u64>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Synthetic bit depth (8 or 16).
    #[arg(long, default_value_t = 8)]
    bits: u8,
    /// Synthetic targets per frame.
    #[arg(long, default_value_t = 2)]
    targets: usize,
    /// Keep retrying a camera that disappears instead of ending the stream.
    #[arg(long)]
    reconnect: bool,
    /// Calibration profile (NUC + bad pixels) for this camera.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// 16-bit mapping: `percentile` (robust stretch smoothed over time) or `fixed` (÷65535).
    #[arg(long, default_value = "percentile")]
    stretch: String,
    /// Probability threshold (default: the weights' recorded operating point, else 0.5).
    #[arg(long)]
    threshold: Option<f32>,
    /// Frames per inference call (1 = lowest latency).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long)]
    min_area: Option<usize>,
    #[arg(long)]
    max_area: Option<usize>,
    /// Temporal confirmation M/N: keep targets seen in M of the last N frames.
    #[arg(long)]
    confirm: Option<String>,
    /// Radius (px) for temporal confirmation.
    #[arg(long, default_value_t = 3.0)]
    confirm_radius: f64,
    /// JSON Lines output: `-` (stdout) or a file.
    #[arg(long, default_value = "-")]
    jsonl: String,
    /// Write mask PNGs here.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Write overlay PNGs (frame with numbered target boxes) here.
    #[arg(long)]
    overlays: Option<PathBuf>,
    /// Print statistics every N frames.
    #[arg(long)]
    stats_every: Option<u64>,
    /// Write the final statistics as JSON here.
    #[arg(long)]
    stats_json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TrainStage {
    /// Stage 1: the reconstruction net on MSE(R(x), x).
    Recon(TrainArgs),
    /// Stage 2: the segmentation net, with R's encoder from --recon frozen.
    Seg {
        /// Stage-1 checkpoint (OUT/recon-best.ckpt.safetensors).
        #[arg(long)]
        recon: PathBuf,
        #[command(flatten)]
        args: TrainArgs,
    },
    /// Both stages, then the fp16 weights file.
    All(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Dataset root in the SIRST layout (images/, masks/NAME_pixels0.png, splits/train.txt, splits/val.txt).
    #[arg(long, required_unless_present = "images")]
    data: Option<PathBuf>,
    /// Generic layout: folder of images (with --masks and --mask-suffix).
    #[arg(long, requires = "masks")]
    images: Option<PathBuf>,
    #[arg(long)]
    masks: Option<PathBuf>,
    #[arg(long, default_value = "")]
    mask_suffix: String,
    #[arg(long, default_value = "png")]
    extension: String,
    /// Split files listing the NAMEs to train on and validate with.
    #[arg(long)]
    train_split: Option<PathBuf>,
    #[arg(long)]
    val_split: Option<PathBuf>,
    /// Unlabeled image folders added to the reconstruction stage (repeatable).
    #[arg(long)]
    recon_extra: Vec<PathBuf>,
    #[arg(long, default_value = "lite")]
    preset: String,
    /// Segmentation-stage epochs.
    #[arg(long, default_value_t = 300)]
    epochs: usize,
    /// Reconstruction-stage epochs.
    #[arg(long, default_value_t = 100)]
    recon_epochs: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    poly_power: f64,
    #[arg(long, default_value_t = 41)]
    seed: u64,
    /// Images are resized to SIZE×SIZE for training.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Train on random CROP×CROP crops of the resized images (faster steps).
    #[arg(long)]
    crop: Option<usize>,
    /// Probability that a crop is placed around a target.
    #[arg(long, default_value_t = 0.8)]
    target_bias: f64,
    /// Disable the random rot90 and flips.
    #[arg(long)]
    no_augment: bool,
    #[arg(long, default_value_t = 1)]
    val_every: usize,
    /// Output folder: checkpoints, log.jsonl.
    #[arg(long)]
    out: PathBuf,
    /// Final weights file (default OUT/srsnet.safetensors).
    #[arg(long)]
    weights_out: Option<PathBuf>,
    /// Continue from OUT's last checkpoint.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl TrainArgs {
    fn split(self) -> Result<(cli::train::DataArgs, cli::train::RunArgs, PathBuf)> {
        use srsnet::train::augment::AugmentConfig;
        use srsnet::train::data::PairLayout;
        use srsnet::train::optim::SgdConfig;
        let mut data = match (&self.data, &self.images, &self.masks) {
            (Some(root), _, _) => cli::train::DataArgs::sirst(root),
            (None, Some(images), Some(masks)) => cli::train::DataArgs {
                layout: PairLayout {
                    images: images.clone(),
                    masks: masks.clone(),
                    mask_suffix: self.mask_suffix.clone(),
                    extension: self.extension.clone(),
                },
                train_split: None,
                val_split: None,
                recon_extra: vec![],
            },
            _ => anyhow::bail!("give --data DIR (SIRST layout) or --images DIR --masks DIR"),
        };
        if self.train_split.is_some() {
            data.train_split = self.train_split.clone();
        }
        if self.val_split.is_some() {
            data.val_split = self.val_split.clone();
        }
        data.recon_extra = self.recon_extra.clone();
        let weights_out = self
            .weights_out
            .clone()
            .unwrap_or_else(|| self.out.join("srsnet.safetensors"));
        let run = cli::train::RunArgs {
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
            augment: AugmentConfig {
                crop: self.crop,
                target_bias: self.target_bias,
                rotate_flip: !self.no_augment,
            },
            val_every: self.val_every,
            out: self.out,
            resume: self.resume,
            device: parse_device(&self.device)?,
        };
        Ok((data, run, weights_out))
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Infer {
            weights,
            device,
            threshold,
            out,
            images,
        } => cli::infer::run(&cli::infer::InferArgs {
            weights: weights.unwrap_or_else(cli::default_weights),
            device: parse_device(&device)?,
            threshold,
            out,
            images,
        }),
        Command::Import {
            recon,
            seg,
            preset,
            out,
            dtype,
        } => cli::weights::import(&recon, &seg, &preset, &out, cli::weights::parse_dtype(&dtype)?),
        Command::Export {
            weights,
            out,
            dtype,
            reference_dir,
            threshold,
        } => cli::weights::export(
            &weights,
            &out,
            cli::weights::parse_dtype(&dtype)?,
            reference_dir.as_deref(),
            threshold,
        ),
        Command::Init {
            preset,
            out,
            seed,
            dtype,
        } => cli::weights::init(&preset, &out, seed, cli::weights::parse_dtype(&dtype)?),
        Command::Info { weights } => cli::weights::info(&weights),
        Command::Run(r) => {
            use srsnet::stream::pipeline::PipelineConfig;
            use srsnet::stream::postprocess::AreaLimits;
            use srsnet::stream::preprocess::Stretch;
            let stretch = match r.stretch.as_str() {
                "percentile" => Stretch::default(),
                "fixed" => Stretch::Fixed,
                other => anyhow::bail!("--stretch `{other}`: expected percentile or fixed"),
            };
            let confirm = r
                .confirm
                .as_deref()
                .map(|c| cli::run::parse_confirm(c, r.confirm_radius))
                .transpose()?;
            let args = cli::run::RunArgs {
                source: r.source,
                weights: r.weights.unwrap_or_else(cli::default_weights),
                model: r.model,
                device: parse_device(&r.device)?,
                size: r.size,
                format: r.format,
                fps: r.fps,
                looping: r.looping,
                count: r.count,
                seed: r.seed,
                bits: r.bits,
                targets: r.targets,
                reconnect: r.reconnect,
                calibration: r.calibration,
                stretch,
                pipeline: PipelineConfig {
                    threshold: r.threshold.unwrap_or(f32::NAN),
                    batch: r.batch,
                    area: AreaLimits {
                        min: r.min_area,
                        max: r.max_area,
                    },
                    confirm,
                    stats_every: r.stats_every,
                    queue: 4,
                },
                jsonl: Some(r.jsonl),
                masks: r.masks,
                overlays: r.overlays,
                stats_json: r.stats_json,
            };
            cli::run::run(args).map(|_| ())
        }
        Command::Calibrate {
            cold,
            hot,
            size,
            format,
            out,
        } => cli::calibrate::calibrate(&cold, &hot, size, &format, &out).map(|_| ()),
        Command::Synth {
            out,
            count,
            size,
            bits,
            targets,
            seed,
            flat,
        } => srsnet::synthetic::write_frames(&out, count, size, bits, targets, seed, flat),
        Command::Eval {
            weights,
            model,
            data,
            split,
            pred,
            gt,
            gt_suffix,
            sequence,
            threshold,
            sweep,
            device,
            json,
        } => {
            if !sweep.is_empty() {
                let root = data
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("--sweep needs --data DIR"))?;
                let weights = weights.unwrap_or_else(cli::default_weights);
                let seg = srsnet::infer::Segmenter::new(&model, &weights, &parse_device(&device)?)?;
                let layout = srsnet::train::data::PairLayout::sirst(root);
                let (rows, failed) = cli::eval::sweep_model(&seg, &layout, split.as_deref(), &sweep)?;
                for (t, m) in sweep.iter().zip(rows) {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "model": seg.name(), "threshold": t, "metrics": m })
                        );
                    } else {
                        println!(
                            "threshold {t:.3}: IoU {:.4} nIoU {:.4} F1 {:.4} Pd {:.4} Fa {:.2}e-6",
                            m.iou,
                            m.niou,
                            m.f1,
                            m.pd,
                            m.fa * 1e6
                        );
                    }
                }
                if failed > 0 {
                    anyhow::bail!("{failed} inputs could not be scored (see above)");
                }
                return Ok(());
            }
            let (label, (metrics, failed)) = if let (Some(pred), Some(gt)) = (&pred, &gt) {
                (
                    format!("masks {}", pred.display()),
                    cli::eval::eval_masks(pred, gt, &gt_suffix)?,
                )
            } else {
                let weights = weights.unwrap_or_else(cli::default_weights);
                let seg = srsnet::infer::Segmenter::new(&model, &weights, &parse_device(&device)?)?;
                let threshold = threshold.unwrap_or(seg.default_threshold());
                match (&data, &sequence) {
                    (Some(root), _) => {
                        let layout = srsnet::train::data::PairLayout::sirst(root);
                        (
                            seg.name(),
                            cli::eval::eval_model(&seg, &layout, split.as_deref(), threshold)?,
                        )
                    }
                    (None, Some(seq)) => (seg.name(), cli::eval::eval_sequence(&seg, seq, threshold)?),
                    _ => anyhow::bail!("give --data DIR, --sequence DIR, or --pred DIR --gt DIR"),
                }
            };
            let points_only = sequence.is_some() && data.is_none() && pred.is_none();
            if json && points_only {
                let m = &metrics;
                let v = serde_json::json!({ "pd": m.pd, "fa": m.fa, "frames": m.images, "targets": m.targets, "hits": m.hits });
                println!(
                    "{}",
                    serde_json::json!({ "model": label, "rule": "centroid", "metrics": v, "failed": failed })
                );
            } else if json {
                println!(
                    "{}",
                    serde_json::json!({ "model": label, "metrics": metrics, "failed": failed })
                );
            } else {
                println!("{}", cli::eval::table(&label, &metrics, points_only));
            }
            if failed > 0 {
                anyhow::bail!("{failed} inputs could not be scored (see above)");
            }
            Ok(())
        }
        Command::Train { stage } => {
            use cli::train::Which;
            let (which, args, recon) = match stage {
                TrainStage::Recon(a) => (Which::Recon, a, None),
                TrainStage::Seg { recon, args } => (Which::Seg, args, Some(recon)),
                TrainStage::All(a) => (Which::All, a, None),
            };
            let (data, run, weights_out) = args.split()?;
            cli::train::run(which, &data, &run, recon.as_deref(), &weights_out)
        }
        Command::Bench {
            weights,
            preset,
            device,
            size,
            warmup,
            iters,
            train,
            batch,
        } => {
            // The U-Net pools three times; the frame must divide evenly.
            if size == 0 || size % 8 != 0 {
                anyhow::bail!("--size {size}: the network needs a positive multiple of 8 (e.g. 256)");
            }
            if let Some(stage) = train {
                let r = cli::bench::train_throughput(&preset, &stage, batch, size, iters)?;
                let peak = r
                    .peak_rss_bytes
                    .map(|b| format!(", peak memory {:.2} GB", b as f64 / 1e9))
                    .unwrap_or_default();
                println!(
                    "{preset} {stage} training step, batch {batch}, {size}x{size}, CPU f32: {:.3} images/s \
                     ({:.3} s per step, mean of {iters}){peak}",
                    r.images_per_s, r.seconds_per_step
                );
                return Ok(());
            }
            let device = parse_device(&device)?;
            let tmp;
            let path = match weights {
                Some(p) => p,
                None => {
                    tmp =
                        std::env::temp_dir().join(format!("srsnet-bench-{preset}-{}.safetensors", std::process::id()));
                    cli::weights::init(&preset, &tmp, 41, candle_core::DType::F16)?;
                    tmp.clone()
                }
            };
            let r = cli::bench::forward_latency(&path, &device, size, warmup, iters);
            if path.starts_with(std::env::temp_dir()) {
                let _ = std::fs::remove_file(&path);
            }
            let r = r?;
            println!(
                "{} {}x{} on {:?}: mean {:.1} ms, p50 {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs",
                r.preset, r.size, r.size, device, r.mean_ms, r.p50_ms, r.min_ms, r.max_ms, r.iters
            );
            Ok(())
        }
    }
}
