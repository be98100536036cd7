//! Training checkpoints: every variable (parameters and BatchNorm running statistics), the
//! optimiser's momentum buffers, and where the run stands, so `--resume` continues exactly.

use super::mining::HardNegative;
use crate::model::weights::WeightStore;
use crate::tensor_file::write_safetensors;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Where a run stands: the next batch to run is `batch` of `epoch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// `recon` or `seg`.
    pub stage: String,
    /// Epoch of the next batch.
    pub epoch: usize,
    /// Next batch within the epoch.
    pub batch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Steps of the whole run (the poly schedule's horizon).
    pub max_steps: usize,
    /// Best validation score so far.
    pub best_score: Option<f64>,
    /// Epoch of the best score.
    pub best_epoch: Option<usize>,
    /// The hard-negative pool mined last (empty unless the run mines; older checkpoints have none).
    #[serde(default)]
    pub hard_negatives: Vec<HardNegative>,
    /// The instruction set the CPU kernels ran on when this was written (`avx512`, `avx2`,
    /// `neon`, `scalar`; none in older checkpoints). Why: a run repeats itself to the bit on one
    /// instruction set only; kernels of another width round differently (models/README.md,
    /// run `lite-v12-repro`), so a resume elsewhere is told it will not continue exactly.
    #[serde(default)]
    pub isa: Option<String>,
    /// The decay of the run's weight average (`--ema`; none without one, and in older
    /// checkpoints). A resume must name the same, since the average is part of the run.
    #[serde(default)]
    pub ema_decay: Option<f64>,
}

/// Writes a checkpoint (write then rename, so an interrupted write never replaces a good one):
/// the variables as `var.NAME`, the momentum buffers as `momentum.NAME`, and `extra` (already
/// named, e.g. the weight average's `ema.NAME`) as they are.
pub fn save<'a>(
    path: &Path,
    vars: &BTreeMap<String, Var>,
    momentum: &BTreeMap<String, Tensor>,
    extra: impl Iterator<Item = (String, &'a Tensor)>,
    state: &RunState,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in extra {
        tensors.push((n, t.to_dtype(DType::F32)?.contiguous()?));
    }
    for (n, v) in vars {
        tensors.push((format!("var.{n}"), v.as_tensor().to_dtype(DType::F32)?.contiguous()?));
    }
    for (n, t) in momentum {
        tensors.push((format!("momentum.{n}"), t.to_dtype(DType::F32)?.contiguous()?));
    }
    let mut meta = HashMap::new();
    meta.insert("state".to_string(), serde_json::to_string(state)?);
    // Whole or not at all (`write_safetensors`), so an interrupted write never replaces a good
    // checkpoint.
    write_safetensors(
        path,
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
        Some(meta),
        "checkpoint",
    )
}

/// An opened checkpoint.
pub struct Checkpoint {
    /// The checkpoint's tensors.
    pub store: Arc<WeightStore>,
    /// Where the run stands.
    pub state: RunState,
}

impl Checkpoint {
    /// Opens a checkpoint and reads its state.
    pub fn open(path: &Path) -> Result<Self> {
        let store = WeightStore::open(path)?;
        let state = store
            .metadata()
            .get("state")
            .with_context(|| {
                format!(
                    "{} is not an srsnet training checkpoint (no `state` metadata)",
                    path.display()
                )
            })
            .and_then(|s| {
                serde_json::from_str(s).with_context(|| format!("{}: bad `state` metadata", path.display()))
            })?;
        Ok(Self { store, state })
    }

    /// Momentum buffers by variable name.
    pub fn momentum(&self, device: &Device) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for n in self.store.names() {
            if let Some(var) = n.strip_prefix("momentum.") {
                out.insert(var.to_string(), self.store.get_any_shape(&n, DType::F32, device)?);
            }
        }
        Ok(out)
    }
}
