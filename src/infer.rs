//! Single-frame inference: a weights file's model and preprocessing applied to a frame,
//! giving the probability map at the frame's native size and its targets.

pub use crate::detect::{Detection, TargetRule};
use crate::device::compute_dtype;
use crate::engine::{CpuEngine, Engine, Isa};
use crate::image_io::Frame;
use crate::model::weights_file::WeightsFile;
use crate::model::Srsnet;
use crate::preprocess::PreprocessSpec;
use crate::temporal::MotionInput;
use crate::verify::Verifier;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use std::path::Path;
use std::sync::Mutex;

/// How inference runs on the CPU: which engine, on how many kernel threads.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// The fused-kernel plan (default) or the Candle graph.
    pub engine: Engine,
    /// Kernel threads (the plan's pool; the Candle path uses rayon's global pool).
    pub threads: usize,
    /// Apply the second stage the weights carry (`info.verifier`), if any.
    pub verify: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            engine: Engine::Plan,
            threads: crate::engine::default_threads(),
            verify: true,
        }
    }
}

/// A loaded model ready to run on frames.
pub struct Detector {
    /// The network (R encoder + S).
    pub model: Srsnet,
    /// How frames become network input.
    pub preprocess: PreprocessSpec,
    /// The operating point recorded in the weights file (`info.threshold`, else 0.5, and
    /// `info.grow`, else none).
    pub rule: TargetRule,
    /// The second stage recorded with the weights, when it is used (`verify`).
    pub verifier: Option<Verifier>,
    device: Device,
    dtype: DType,
    /// The CPU plan engine, when it runs the model (CPU and `Engine::Plan`).
    plan: Option<Mutex<CpuEngine>>,
}

impl Detector {
    /// Loads `path` for inference on `device` (f32 on CPU, f16 on CUDA), BatchNorm folded,
    /// with the default engine (the plan on the CPU).
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        Self::load(path, device, EngineOptions::default())
    }

    /// Loads `path` for inference on `device` with the given CPU engine options.
    pub fn load(path: &Path, device: &Device, opts: EngineOptions) -> Result<Self> {
        let file = WeightsFile::open(path).with_context(|| format!("loading weights {}", path.display()))?;
        let dtype = compute_dtype(device);
        let model = file
            .load_model(device, dtype, true)
            .with_context(|| format!("loading weights {}", path.display()))?;
        let rule = file.operating_point();
        let verifier = if opts.verify { file.verifier() } else { None };
        let plan = match (device, opts.engine) {
            (Device::Cpu, Engine::Plan) => Some(Mutex::new(CpuEngine::new(opts.threads, Isa::best())?)),
            _ => None,
        };
        Ok(Self {
            model,
            preprocess: file.preprocess,
            rule,
            verifier,
            device: device.clone(),
            dtype,
            plan,
        })
    }

    /// `plan` or `candle`, and the plan's kernel threads and instruction set.
    pub fn engine_name(&self) -> String {
        match &self.plan {
            Some(p) => {
                let p = p.lock().unwrap_or_else(|e| e.into_inner());
                format!("plan ({} threads, {})", p.threads(), p.isa().name())
            }
            None => "candle".into(),
        }
    }

    /// One frame through the plan: its logits at the frame's size.
    fn plan_logits(&self, engine: &Mutex<CpuEngine>, frame: &Frame) -> Result<Vec<f32>> {
        let (input, (nw, nh), restore) = self.preprocess.prepare_values(frame)?;
        let mut logits = vec![0.0; nw * nh];
        let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
        engine.forward(&self.model, &input, nh, nw, &mut logits)?;
        Ok(restore.apply(&logits, nw, nh, frame.width, frame.height))
    }

    /// Image channels the model takes (1 gray, 3 RGB).
    pub fn channels(&self) -> usize {
        self.preprocess.channels
    }

    /// How a motion model's temporal plane is made; `None` for a single-frame model.
    pub fn motion(&self) -> Option<MotionInput> {
        self.preprocess.motion
    }

    /// Runs the model on one frame; targets are the components of `rule`'s mask.
    pub fn detect(&self, frame: &Frame, rule: TargetRule) -> Result<Detection> {
        Ok(self.detect_batch(std::slice::from_ref(frame), rule)?.remove(0))
    }

    /// Runs frames of one size as one batch (each frame still gets its own DPConv kernel);
    /// frames of different sizes run one by one.
    pub fn detect_batch(&self, frames: &[Frame], rule: TargetRule) -> Result<Vec<Detection>> {
        if let Some(engine) = &self.plan {
            return frames
                .iter()
                .map(|f| Ok(self.verified(f, detection(f, &self.plan_logits(engine, f)?, rule))))
                .collect();
        }
        let same_size = frames
            .windows(2)
            .all(|p| (p[0].width, p[0].height) == (p[1].width, p[1].height));
        if !same_size {
            return frames.iter().map(|f| self.detect(f, rule)).collect();
        }
        let mut inputs = Vec::with_capacity(frames.len());
        let mut restore = None;
        for f in frames {
            let (x, r) = self.preprocess.prepare(f, self.dtype, &self.device)?;
            inputs.push(x);
            restore = Some(r);
        }
        let Some(restore) = restore else { return Ok(vec![]) };
        let logits = self.model.forward(&candle_core::Tensor::cat(&inputs, 0)?)?;
        let (_, _, oh, ow) = logits.dims4()?;
        let logits = logits.to_dtype(DType::F32)?;
        frames
            .iter()
            .enumerate()
            .map(|(b, frame)| {
                let plane = logits.get(b)?.flatten_all()?.to_vec1::<f32>()?;
                // Map logits (not probabilities) back, then squash: resizing is linear, sigmoid is not.
                let z = restore.apply(&plane, ow, oh, frame.width, frame.height);
                Ok(self.verified(frame, detection(frame, &z, rule)))
            })
            .collect()
    }

    /// `det` less the targets the second stage rejects, when the weights carry one.
    fn verified(&self, frame: &Frame, mut det: Detection) -> Detection {
        if let Some(v) = &self.verifier {
            det.verifier_rejected = v.filter(&mut det, frame);
        }
        det
    }
}

/// Probabilities and targets from a frame's logits, in f32 on the host whatever the device
/// computed in (an f16 sigmoid saturates to exactly 1 from a logit of about 8).
fn detection(frame: &Frame, logits: &[f32], rule: TargetRule) -> Detection {
    let prob = logits.iter().map(|&z| crate::engine::kernels::sigmoid(z)).collect();
    Detection::from_prob(frame.width, frame.height, prob, rule)
}

/// Whatever turns a frame into target probabilities: SRSNet weights or the top-hat baseline.
pub enum Segmenter {
    /// SRSNet weights.
    Net(Box<Detector>),
    /// The training-free top-hat baseline.
    TopHat(crate::eval::tophat::TopHat),
}

impl Segmenter {
    /// `model`: `net` (with `weights`), `tophat` (default parameters) or
    /// `tophat:SE:K[:MIN_CONTRAST]` (structuring element side, threshold in std, minimum response).
    pub fn new(model: &str, weights: &Path, device: &Device, opts: EngineOptions) -> Result<Self> {
        let mut parts = model.split(':');
        match parts.next().unwrap_or_default() {
            "net" | "srsnet" => Ok(Self::Net(Box::new(Detector::load(weights, device, opts)?))),
            "tophat" => {
                let mut t = crate::eval::tophat::TopHat::default();
                let bad = || anyhow::anyhow!("model `{model}`: expected tophat:SE:K[:MIN_CONTRAST], e.g. tophat:11:6");
                if let Some(se) = parts.next() {
                    t.se = se.parse().map_err(|_| bad())?;
                }
                if let Some(k) = parts.next() {
                    t.k = k.parse().map_err(|_| bad())?;
                }
                if let Some(c) = parts.next() {
                    t.min_contrast = c.parse().map_err(|_| bad())?;
                }
                if t.se < 3 || t.se % 2 == 0 || t.k <= 0.0 {
                    return Err(bad());
                }
                Ok(Self::TopHat(t))
            }
            other => anyhow::bail!("unknown model `{other}`: expected net, tophat or tophat:SE:K"),
        }
    }

    /// The target rule to use when the user gives none: the weights' operating point; the
    /// baseline's own threshold (0.5 of its soft score).
    pub fn default_rule(&self) -> TargetRule {
        match self {
            Self::Net(d) => d.rule,
            Self::TopHat(_) => TargetRule::plain(0.5),
        }
    }

    /// Channels frames must have (the baseline reads gray).
    pub fn channels(&self) -> usize {
        match self {
            Self::Net(d) => d.channels(),
            Self::TopHat(_) => 1,
        }
    }

    /// How a motion model's temporal plane is made (frames of a sequence then carry it as
    /// their last plane; `crate::temporal`); `None` for single-frame models and the baseline.
    pub fn motion(&self) -> Option<MotionInput> {
        match self {
            Self::Net(d) => d.motion(),
            Self::TopHat(_) => None,
        }
    }

    /// Runs on one frame; targets are the components of `rule`'s mask.
    pub fn detect(&self, frame: &Frame, rule: TargetRule) -> Result<Detection> {
        match self {
            Self::Net(d) => d.detect(frame, rule),
            Self::TopHat(t) => Ok(t.detect(frame, rule)),
        }
    }

    /// `det` (this segmenter's detection on `frame`) under another rule, with the weights'
    /// verifier applied as `detect` would: `eval --sweep` runs the net once and scores each
    /// rule on its probability map.
    pub fn at_rule(&self, frame: &Frame, det: &Detection, rule: TargetRule) -> Detection {
        let d = Detection::from_prob(det.width, det.height, det.prob.clone(), rule);
        match self {
            Self::Net(n) => n.verified(frame, d),
            Self::TopHat(_) => d,
        }
    }

    /// A micro-batch of frames (one forward pass for the network).
    pub fn detect_batch(&self, frames: &[Frame], rule: TargetRule) -> Result<Vec<Detection>> {
        match self {
            Self::Net(d) => d.detect_batch(frames, rule),
            Self::TopHat(t) => Ok(frames.iter().map(|f| t.detect(f, rule)).collect()),
        }
    }

    /// A name for logs and reports.
    pub fn name(&self) -> String {
        match self {
            Self::Net(d) => match &d.verifier {
                Some(v) => format!("srsnet ({}, verifier at {:.3})", d.model.config.name, v.threshold),
                None => format!("srsnet ({})", d.model.config.name),
            },
            Self::TopHat(t) => format!("tophat (se {}, k {})", t.se, t.k),
        }
    }
}
