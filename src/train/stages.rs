//! One training step of each stage, on a batch already on the device.
//!
//! Stage 1 trains the full reconstruction net R (BatchNorm in training mode) on
//! `MSE(R(x), x)`. Stage 2 trains the segmentation net S (training mode) on
//! `0.5·BCE + soft Dice`, with R's encoder frozen: read-only tensors, eval-mode BatchNorm,
//! no gradient. (The reference leaves R's BatchNorm in training mode during stage 2, so R
//! normalises with each batch's statistics; we freeze it fully, as the issue asks.)

use super::loss::{mse, segmentation_loss, LossConfig};
use super::optim::{Sgd, SgdConfig};
use crate::model::unet::Encoder;
use crate::model::weights::{BnMode, VarSource, Weights};
use crate::model::{ModelConfig, ReconNet, SegNet, Srsnet};
use candle_core::{DType, Device, Result, Tensor, Var};
use std::sync::Arc;

/// Whether a variable is a BatchNorm running statistic (`running_mean`, `running_var`): state
/// that training updates from batches, not a parameter that SGD steps.
pub fn is_running_statistic(name: &str) -> bool {
    name.contains("running_")
}

/// The trainable parameters of a variable set: everything but BatchNorm running statistics.
pub fn trainable(vars: &VarSource) -> Vec<(String, Var)> {
    vars.vars()
        .into_iter()
        .filter(|(n, _)| !is_running_statistic(n))
        .collect()
}

/// Stage 1: the reconstruction net and its optimiser.
pub struct ReconStage {
    /// The reconstruction net.
    pub net: ReconNet,
    /// Its trainable variables.
    pub vars: Arc<VarSource>,
    /// BatchNorm mode switch.
    pub bn: BnMode,
    /// Its optimiser.
    pub opt: Sgd,
}

impl ReconStage {
    /// `w` must be a view over trainable variables (see [`Weights::from_vars`]).
    pub fn new(
        w: &Weights,
        vars: Arc<VarSource>,
        cfg: &ModelConfig,
        sgd: SgdConfig,
        max_steps: usize,
    ) -> anyhow::Result<Self> {
        let bn = BnMode::default();
        let net = ReconNet::load(&w.clone().with_bn_mode(bn.clone()), cfg)?;
        let opt = Sgd::new(trainable(&vars), sgd, max_steps);
        Ok(Self { net, vars, bn, opt })
    }

    /// One SGD step on batch `x`; returns the loss before the step.
    pub fn step(&mut self, x: &Tensor) -> Result<f64> {
        self.bn.set_training(true);
        let loss = mse(&self.net.forward(x)?, x)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()
    }

    /// Eval-mode loss (running statistics), no update.
    pub fn eval_loss(&self, x: &Tensor) -> Result<f64> {
        self.bn.set_training(false);
        mse(&self.net.forward(x)?.detach(), x)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    }
}

/// Stage 2: the segmentation net, its optimiser, and the frozen reconstruction encoder.
pub struct SegStage {
    /// The segmentation net.
    pub net: SegNet,
    /// R's frozen encoder.
    pub recon_encoder: Encoder,
    /// S's trainable variables.
    pub vars: Arc<VarSource>,
    /// BatchNorm mode switch.
    pub bn: BnMode,
    /// Its optimiser.
    pub opt: Sgd,
    /// The loss's costs beyond the reference's (target-free samples, per-target recall; see
    /// `train::loss`); the default is the reference's loss.
    pub loss: LossConfig,
    /// The views S and R were loaded from, for [`SegStage::folded`].
    views: (Weights, Weights),
    config: ModelConfig,
}

impl SegStage {
    /// `seg_w`: trainable view for S; `recon_w`: a read-only view of trained R weights.
    pub fn new(
        seg_w: &Weights,
        vars: Arc<VarSource>,
        recon_w: &Weights,
        cfg: &ModelConfig,
        sgd: SgdConfig,
        max_steps: usize,
    ) -> anyhow::Result<Self> {
        let bn = BnMode::default();
        let net = SegNet::load(&seg_w.clone().with_bn_mode(bn.clone()), cfg)?;
        // Its own switch, never set: the frozen encoder always uses running statistics.
        let recon_encoder = Encoder::load(
            &recon_w.clone().with_bn_mode(BnMode::default()),
            &cfg.recon,
            cfg.in_channels,
        )?;
        let opt = Sgd::new(trainable(&vars), sgd, max_steps);
        Ok(Self {
            net,
            recon_encoder,
            vars,
            bn,
            opt,
            loss: LossConfig::default(),
            views: (seg_w.clone(), recon_w.clone()),
            config: cfg.clone(),
        })
    }

    /// The inference model as it stands now: R's encoder and S with their BatchNorms folded
    /// (running statistics), in f32 on the CPU, for the plan engine to run at validation.
    pub fn folded(&self) -> anyhow::Result<Srsnet> {
        let cpu = |w: &Weights| w.clone().with_dtype(DType::F32).with_bn_folding(true);
        let (seg, recon) = &self.views;
        let (seg, recon) = (cpu(seg), cpu(recon));
        if !matches!(seg.device(), Device::Cpu) {
            anyhow::bail!("the folded model is for the CPU engine");
        }
        Ok(Srsnet::load(&recon, &seg, &self.config)?)
    }

    /// DPConv's info feature from the frozen encoder, cut from the graph. R sees the image
    /// planes only (a motion model's last plane is S's alone).
    pub fn info(&self, x: &Tensor) -> Result<Tensor> {
        let image = x.narrow(1, 0, self.config.in_channels)?;
        Ok(self.recon_encoder.forward(&image)?.x[3].detach())
    }

    /// One SGD step on (x, mask); returns the loss before the step.
    pub fn step(&mut self, x: &Tensor, mask: &Tensor) -> Result<f64> {
        self.bn.set_training(true);
        let y = self.info(x)?;
        let loss = segmentation_loss(&self.net.forward(x, &y)?, mask, &self.loss)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()
    }

    /// Adds batch `x` to a fresh estimate of S's BatchNorm running statistics: the plain mean
    /// over the `k + 1` batches given so far (`k` counts from 0), not the exponential average
    /// of training. No gradient is taken and no weight changes.
    pub fn accumulate_bn_statistics(&mut self, x: &Tensor, k: usize) -> Result<()> {
        let momentum = self.bn.momentum();
        self.bn.set_training(true);
        // With momentum 1/(k+1), running = (k·running + batch)/(k+1): the mean of k+1 batches.
        self.bn.set_momentum(1.0 / (k + 1) as f64);
        let out = self.net.forward(x, &self.info(x)?).map(|_| ());
        self.bn.set_momentum(momentum);
        out
    }

    /// Eval-mode logits (running statistics), detached.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.bn.set_training(false);
        Ok(self.net.forward(x, &self.info(x)?)?.detach())
    }
}

/// A device-independent default: f32 everywhere while training (f16 gradients would underflow).
pub fn training_dtype(_device: &Device) -> DType {
    DType::F32
}
