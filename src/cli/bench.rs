//! `srsnet bench`: latency of one forward pass (R encoder + S) on one frame, or the
//! throughput of training steps.

use super::{parse_at_least_one, parse_batch};
use crate::device::{compute_dtype, DeviceSpec};
use crate::engine::{Engine, Isa, Plan, ThreadPool};
use crate::limits::check_frame_size;
use crate::model::weights_file::WeightsFile;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which training stage `--train` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchStage {
    /// The reconstruction net.
    Recon,
    /// The segmentation net (R frozen).
    Seg,
}

/// Arguments of `srsnet bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Weights file; without it, an untrained model of --preset is timed.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Model preset (official, lite) or a config JSON file, when no --weights.
    #[arg(long, default_value = "lite")]
    pub preset: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Frame size: N (square) or WxH; both sides multiples of 8.
    #[arg(long, default_value = "256", value_parser = parse_bench_size)]
    pub size: (usize, usize),
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs (at least 1).
    #[arg(long, default_value_t = 20, value_parser = parse_at_least_one)]
    pub iters: usize,
    /// Time training steps of this stage instead of inference.
    #[arg(long, value_enum)]
    pub train: Option<BenchStage>,
    /// Batch size for --train.
    #[arg(long, default_value_t = 8, value_parser = parse_batch)]
    pub batch: usize,
    /// CPU engine options.
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Also print each plan step's mean time (the per-layer breakdown; plan engine only).
    #[arg(long)]
    pub layers: bool,
    /// Instruction set for the plan's kernels (scalar, avx2, avx512, neon; default: the best this CPU has).
    #[arg(long, value_parser = parse_isa)]
    pub isa: Option<Isa>,
}

/// `--isa`: an instruction set this CPU has.
fn parse_isa(s: &str) -> Result<Isa, String> {
    Isa::by_name(s).ok_or_else(|| {
        let have: Vec<_> = Isa::available().iter().map(|i| i.name()).collect();
        format!("`{s}`: this CPU runs {}", have.join(", "))
    })
}

/// `N` or `WxH`, both sides positive multiples of 8 within the frame limits.
fn parse_bench_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = match s.parse::<usize>() {
        Ok(n) => (n, n),
        Err(_) => super::parse_size(s)?,
    };
    check_frame_size("--size", w, h).map_err(|e| e.to_string())?;
    if w % 8 != 0 || h % 8 != 0 {
        return Err(format!(
            "`{s}`: the network needs sides that are multiples of 8 (e.g. 256 or 640x512)"
        ));
    }
    Ok((w, h))
}

/// Runs `srsnet bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let (w, h) = args.size;
    if let Some(stage) = args.train {
        if w != h {
            bail!("--train times square crops; give --size N");
        }
        let r = train_throughput(&args.preset, stage, args.batch, w, args.iters)?;
        let peak = r
            .peak_rss_bytes
            .map(|b| format!(", peak memory {:.2} GB", b as f64 / 1e9))
            .unwrap_or_default();
        println!(
            "{} {stage:?} training step, batch {}, {w}x{w}, CPU f32: {:.3} images/s ({:.3} s per step, mean of {}){peak}",
            args.preset, args.batch, r.images_per_s, r.seconds_per_step, args.iters
        );
        return Ok(());
    }
    let device = args.device.open()?;
    let tmp;
    let weights = match &args.weights {
        Some(p) => p.as_path(),
        None => {
            tmp = TempWeights::new(&args.preset)?;
            tmp.0.as_path()
        }
    };
    let opts = args.engine.options();
    let mut setup = BenchSetup {
        warmup: args.warmup,
        iters: args.iters,
        engine: opts.engine,
        threads: opts.threads,
        isa: args.isa.unwrap_or_else(Isa::best),
        layers: args.layers,
    };
    if !matches!(device, Device::Cpu) {
        setup.engine = Engine::Candle;
    }
    let r = forward_latency(weights, &device, (w, h), &setup)?;
    let engine = match setup.engine {
        Engine::Plan => format!("plan, {} threads, {}", setup.threads, setup.isa.name()),
        Engine::Candle => "candle".into(),
    };
    println!(
        "{} {w}x{h} on {device:?} ({engine}): p50 {:.2} ms, min {:.2} ms, max {:.2} ms, mean {:.2} ms over {} runs",
        r.preset, r.p50_ms, r.min_ms, r.max_ms, r.mean_ms, r.iters
    );
    if let Some((act, weights)) = r.plan_memory {
        println!(
            "plan memory: {:.1} MiB activations + {:.1} MiB packed weights",
            act as f64 / (1 << 20) as f64,
            weights as f64 / (1 << 20) as f64
        );
    }
    if !r.layers.is_empty() {
        let total: f64 = r.layers.iter().map(|l| l.1).sum();
        println!("{:<28} {:>9} {:>6}", "step", "ms", "%");
        for (name, ms) in &r.layers {
            println!("{name:<28} {ms:>9.3} {:>5.1}%", 100.0 * ms / total);
        }
    }
    Ok(())
}

/// How `forward_latency` runs.
#[derive(Debug, Clone)]
pub struct BenchSetup {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs.
    pub iters: usize,
    /// Plan or Candle (CUDA always runs Candle).
    pub engine: Engine,
    /// The plan's kernel threads.
    pub threads: usize,
    /// The plan's instruction set.
    pub isa: Isa,
    /// Time every plan step.
    pub layers: bool,
}

/// An untrained weights file this command wrote itself, removed when dropped (and only it:
/// a file the user named is never touched).
struct TempWeights(PathBuf);

impl TempWeights {
    fn new(preset: &str) -> Result<Self> {
        let safe: String = preset
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = std::env::temp_dir().join(format!("srsnet-bench-{safe}-{}.safetensors", std::process::id()));
        let me = Self(path);
        super::init::write_initialised(preset, &me.0, 41, candle_core::DType::F16)?;
        Ok(me)
    }
}

impl Drop for TempWeights {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Forward-pass latency figures, in milliseconds.
pub struct BenchResult {
    /// The config's name.
    pub preset: String,
    /// Timed runs.
    pub iters: usize,
    /// Mean latency.
    pub mean_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// The plan's activation and packed-weight bytes (plan engine).
    pub plan_memory: Option<(usize, usize)>,
    /// Mean milliseconds of each plan step (with `layers`).
    pub layers: Vec<(String, f64)>,
}

/// Times `iters` forward passes on a random frame of `(width, height)` after `warmup` untimed ones.
pub fn forward_latency(
    weights: &Path,
    device: &Device,
    (width, height): (usize, usize),
    setup: &BenchSetup,
) -> Result<BenchResult> {
    if setup.iters == 0 {
        bail!("bench needs at least one timed run");
    }
    let file = WeightsFile::open(weights)?;
    let dtype = compute_dtype(device);
    let model = file.load_model(device, dtype, true)?;
    let planes = file.config.seg_in_channels();
    let x = Tensor::randn(0f32, 1.0, (1, planes, height, width), device)?.to_dtype(dtype)?;
    let mut times = Vec::with_capacity(setup.iters);
    let mut plan_memory = None;
    let mut layers = Vec::new();
    match setup.engine {
        Engine::Plan if matches!(device, Device::Cpu) => {
            let pool = ThreadPool::new(setup.threads)?;
            let mut plan = Plan::build(&model, height, width, setup.isa)?;
            let input = x.flatten_all()?.to_vec1::<f32>()?;
            let mut logits = vec![0.0; width * height];
            let mut step_s = vec![0.0; plan.step_names().count()];
            for i in 0..setup.warmup + setup.iters {
                let timed = i >= setup.warmup;
                let t0 = Instant::now();
                let per_step = (timed && setup.layers).then_some(step_s.as_mut_slice());
                plan.run_timed(&pool, &input, &mut logits, per_step)?;
                if timed {
                    times.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            plan_memory = Some(plan.memory());
            if setup.layers {
                let n = setup.iters as f64;
                layers = plan
                    .step_names()
                    .zip(&step_s)
                    .map(|(s, t)| (s.to_string(), t * 1e3 / n))
                    .collect();
            }
        }
        _ => {
            for i in 0..setup.warmup + setup.iters {
                let t0 = Instant::now();
                let y = model.forward(&x)?;
                // Reading a value back waits for asynchronous (CUDA) work to finish.
                let _ = y
                    .flatten_all()?
                    .get(0)?
                    .to_dtype(candle_core::DType::F32)?
                    .to_scalar::<f32>()?;
                if i >= setup.warmup {
                    times.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(BenchResult {
        preset: file.config.name.clone(),
        iters: setup.iters,
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        p50_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        plan_memory,
        layers,
    })
}

/// What `srsnet bench --train` measures.
pub struct TrainBench {
    /// Training images per second.
    pub images_per_s: f64,
    /// Seconds per step.
    pub seconds_per_step: f64,
    /// The process's peak resident memory (Linux `VmHWM`), when the platform reports it.
    pub peak_rss_bytes: Option<u64>,
}

/// The peak resident set size of this process so far, from `/proc/self/status` (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Throughput of training steps (forward + backward + SGD update) of one stage, after one
/// untimed warm-up step.
pub fn train_throughput(
    preset: &str,
    stage: BenchStage,
    batch: usize,
    size: usize,
    steps: usize,
) -> Result<TrainBench> {
    if steps == 0 || batch == 0 {
        bail!("bench --train needs at least one step of at least one image");
    }
    use crate::model::weights::VarSource;
    use crate::model::{ModelConfig, Weights};
    use crate::train::optim::SgdConfig;
    use crate::train::stages::{ReconStage, SegStage};
    let cfg = ModelConfig::from_preset_or_path(preset)?;
    crate::heap::retain_freed_memory();
    let d = Device::Cpu;
    // S takes the image planes and a motion model's motion plane; R the image planes only.
    let planes = match stage {
        BenchStage::Recon => cfg.in_channels,
        BenchStage::Seg => cfg.seg_in_channels(),
    };
    let x = (Tensor::randn(0f32, 1.0, (batch, planes, size, size), &d)? * 0.3)?;
    let mask = Tensor::zeros((batch, 1, size, size), candle_core::DType::F32, &d)?;
    let vars = VarSource::new(None, 1);
    let w = Weights::from_vars(vars.clone(), candle_core::DType::F32, &d);
    let mut step: Box<dyn FnMut() -> Result<f64>> = match stage {
        BenchStage::Recon => {
            let mut s = ReconStage::new(&w, vars, &cfg, SgdConfig::default(), steps + 1)?;
            Box::new(move || Ok(s.step(&x)?))
        }
        BenchStage::Seg => {
            let recon = Weights::from_vars(VarSource::new(None, 2), candle_core::DType::F32, &d);
            let mut s = SegStage::new(&w, vars, &recon, &cfg, SgdConfig::default(), steps + 1)?;
            Box::new(move || Ok(s.step(&x, &mask)?))
        }
    };
    step()?; // warm-up
    let t0 = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(TrainBench {
        images_per_s: (steps * batch) as f64 / secs,
        seconds_per_step: secs / steps as f64,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
