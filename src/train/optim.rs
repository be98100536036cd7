//! SGD with momentum and weight decay (PyTorch semantics) and the poly learning-rate schedule.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
/// SGD with momentum, weight decay and a poly learning-rate schedule.
pub struct SgdConfig {
    /// Initial learning rate.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Exponent of the poly schedule `lr·(1 − it/max_it)^power`.
    pub poly_power: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            poly_power: 0.9,
        }
    }
}

/// SGD as `torch.optim.SGD`: `g ← ∇ + wd·p; b ← μ·b + g` (b ← g at the first step);
/// `p ← p − lr·b`. The learning rate follows the poly schedule, updated after each step
/// (so step 0 uses the base rate).
pub struct Sgd {
    /// Its settings.
    pub cfg: SgdConfig,
    params: Vec<(String, Var)>,
    momentum: BTreeMap<String, Tensor>,
    /// Steps taken so far.
    pub step: usize,
    /// Steps of the whole run (the schedule's horizon).
    pub max_steps: usize,
}

impl Sgd {
    /// An optimiser over `params`.
    pub fn new(params: Vec<(String, Var)>, cfg: SgdConfig, max_steps: usize) -> Self {
        Self {
            cfg,
            params,
            momentum: BTreeMap::new(),
            step: 0,
            max_steps: max_steps.max(1),
        }
    }

    /// The learning rate the next step uses.
    pub fn lr(&self) -> f64 {
        let frac = (self.step as f64 / self.max_steps as f64).min(1.0);
        self.cfg.lr * (1.0 - frac).powf(self.cfg.poly_power)
    }

    /// Applies one update from `grads` and advances the schedule.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.lr();
        for (name, p) in &self.params {
            // As PyTorch, a parameter without a gradient is left alone (no decay either).
            let Some(g) = grads.get(p.as_tensor()) else { continue };
            let g = (g + (p.as_tensor() * self.cfg.weight_decay)?)?;
            let buf = match self.momentum.get(name) {
                Some(b) => ((b * self.cfg.momentum)? + g)?,
                None => g,
            };
            p.set(&(p.as_tensor() - (&buf * lr)?)?)?;
            self.momentum.insert(name.clone(), buf.detach());
        }
        self.step += 1;
        Ok(())
    }

    /// The momentum buffers, for checkpoints.
    pub fn momentum(&self) -> &BTreeMap<String, Tensor> {
        &self.momentum
    }

    /// Restores momentum buffers and the step count from a checkpoint.
    pub fn restore(&mut self, momentum: BTreeMap<String, Tensor>, step: usize) {
        self.momentum = momentum;
        self.step = step;
    }

    /// The parameters, by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }
}
