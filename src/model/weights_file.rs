//! The project's weights file: one safetensors file holding both nets (reference state-dict
//! names under `recon.` and `seg.`) plus the metadata needed to run it alone: the model config,
//! the preprocessing spec and free-form provenance (import sources, training run, metrics).

use super::config::ModelConfig;
use super::srsnet::{ReconNet, Srsnet};
use super::weights::{WeightStore, Weights, WeightsError};
use crate::detect::TargetRule;
use crate::preprocess::PreprocessSpec;
use crate::tensor_file::write_safetensors;
use crate::verify::Verifier;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Value of the `format` metadata key; bumped when the layout changes incompatibly.
pub const FORMAT: &str = "srsnet-weights/1";
/// Tensor-name prefix of the reconstruction net.
pub const RECON_PREFIX: &str = "recon";
/// Tensor-name prefix of the segmentation net.
pub const SEG_PREFIX: &str = "seg";

/// An opened project weights file.
pub struct WeightsFile {
    /// The mapped tensors.
    pub store: Arc<WeightStore>,
    /// The model's sizes.
    pub config: ModelConfig,
    /// How frames become network input.
    pub preprocess: PreprocessSpec,
    /// Provenance as JSON (import sources, training data, epochs, metrics...).
    pub info: serde_json::Value,
}

impl WeightsFile {
    /// Opens and checks a weights file: format, config, preprocessing, operating point, and every tensor finite.
    pub fn open(path: &Path) -> Result<Self> {
        let store = WeightStore::open(path)?;
        let meta = store.metadata();
        let field = |key: &str| -> Result<&String> {
            meta.get(key).ok_or_else(|| {
                WeightsError::Metadata {
                    file: path.to_path_buf(),
                    key: key.into(),
                    reason:
                        "missing: this is not an srsnet weights file (use `srsnet import` for reference checkpoints)"
                            .into(),
                }
                .into()
            })
        };
        let format = field("format")?;
        if format != FORMAT {
            bail!(WeightsError::Metadata {
                file: path.into(),
                key: "format".into(),
                reason: format!("`{format}`, expected `{FORMAT}`")
            });
        }
        let bad = |key: &str, e: &dyn std::fmt::Display| WeightsError::Metadata {
            file: path.into(),
            key: key.into(),
            reason: e.to_string(),
        };
        let config = ModelConfig::from_json_str(field("config")?).map_err(|e| bad("config", &format!("{e:#}")))?;
        let preprocess: PreprocessSpec =
            serde_json::from_str(field("preprocess")?).map_err(|e| bad("preprocess", &e))?;
        preprocess.validate().map_err(|e| bad("preprocess", &e))?;
        if preprocess.channels != config.in_channels {
            bail!(bad(
                "preprocess",
                &format!(
                    "{} channels, but the model takes {}",
                    preprocess.channels, config.in_channels
                )
            ));
        }
        if preprocess.motion.is_some() != config.motion_channel {
            bail!(bad(
                "preprocess",
                &if config.motion_channel {
                    "no motion input, but the model's S takes a motion plane".to_string()
                } else {
                    "a motion input, but the model takes no motion plane".to_string()
                }
            ));
        }
        let info: serde_json::Value = match meta.get("info") {
            Some(s) => serde_json::from_str(s).map_err(|e| bad("info", &e))?,
            None => serde_json::Value::Null,
        };
        if let Some(t) = info.get("threshold") {
            if !t.as_f64().is_some_and(|t| (0.0..1.0).contains(&t)) {
                bail!(bad(
                    "info",
                    &format!("operating point `threshold` is {t}, expected a number in [0, 1)")
                ));
            }
        }
        if let Some(g) = info.get("grow").filter(|g| !g.is_null()) {
            if !g.as_f64().is_some_and(|g| (0.0..1.0).contains(&g)) {
                bail!(bad(
                    "info",
                    &format!("operating point `grow` is {g}, expected a number in [0, 1) or null")
                ));
            }
        }
        operating_point(&info).map_err(|e| bad("info", &e))?;
        Verifier::from_info(&info).map_err(|e| bad("info", &e))?;
        for name in store.names() {
            let values = store
                .get_any_shape(&name, DType::F32, &Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if !values.iter().all(|x| x.is_finite()) {
                bail!(
                    "{}: tensor `{name}` holds NaN or infinite values (a diverged training run or a corrupt file)",
                    path.display()
                );
            }
        }
        Ok(Self {
            store,
            config,
            preprocess,
            info,
        })
    }

    /// The operating point recorded by `srsnet export`: `info.threshold` (else 0.5) and
    /// `info.grow` (else none). `open` has checked it.
    pub fn operating_point(&self) -> TargetRule {
        operating_point(&self.info).unwrap_or(TargetRule::plain(0.5))
    }

    /// The second stage recorded by `srsnet train verifier` (`info.verifier`); `open` has
    /// checked it.
    pub fn verifier(&self) -> Option<Verifier> {
        Verifier::from_info(&self.info).ok().flatten()
    }

    fn view(&self, prefix: &str, device: &Device, dtype: DType, fold: bool) -> Weights {
        Weights::new(self.store.clone(), dtype, device)
            .with_bn_folding(fold)
            .pp(prefix)
    }

    /// The inference model (R encoder + S) in `dtype` on `device`, BatchNorm folded if asked.
    pub fn load_model(&self, device: &Device, dtype: DType, fold: bool) -> Result<Srsnet> {
        let r = self.view(RECON_PREFIX, device, dtype, fold);
        let s = self.view(SEG_PREFIX, device, dtype, fold);
        Ok(Srsnet::load(&r, &s, &self.config)?)
    }

    /// The full reconstruction net (stage-1 forward).
    pub fn load_recon(&self, device: &Device, dtype: DType) -> Result<ReconNet> {
        Ok(ReconNet::load(
            &self.view(RECON_PREFIX, device, dtype, false),
            &self.config,
        )?)
    }

    /// Every tensor of the file, by name, in `dtype` on the CPU.
    pub fn tensors(&self, dtype: DType) -> Result<BTreeMap<String, Tensor>> {
        self.store
            .names()
            .into_iter()
            .map(|n| Ok((n.clone(), self.store.get_any_shape(&n, dtype, &Device::Cpu)?)))
            .collect()
    }
}

/// Writes a weights file: `tensors` (already prefixed) in `dtype`, with the metadata.
pub fn write(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    config: &ModelConfig,
    preprocess: &PreprocessSpec,
    info: &serde_json::Value,
    dtype: DType,
) -> Result<()> {
    let converted: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(dtype)?.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("config".to_string(), serde_json::to_string(config)?);
    meta.insert("preprocess".to_string(), serde_json::to_string(preprocess)?);
    meta.insert("info".to_string(), serde_json::to_string(info)?);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_safetensors(
        path,
        converted.iter().map(|(n, t)| (n.as_str(), t)),
        Some(meta),
        "weights file",
    )
}

/// Reads the tensors SRSNet uses from reference checkpoints (`SRS_R` and `SRS_S` state dicts,
/// converted to safetensors), prefixed for the project file. Shapes are checked against
/// `config` by building both nets; tensors the reference builds but never calls (S's IPATR,
/// BLAM bn1/bn2, IPATR tr/tr_1, conv0_3_1x1, num_batches_tracked) are left out.
pub fn import_reference(recon: &Path, seg: &Path, config: &ModelConfig) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (path, prefix) in [(recon, RECON_PREFIX), (seg, SEG_PREFIX)] {
        let store = WeightStore::open(path)?;
        let w = Weights::new(store.clone(), DType::F32, &Device::Cpu);
        // Building the nets checks every shape and records which tensors they read.
        if prefix == RECON_PREFIX {
            ReconNet::load(&w, config)?;
        } else {
            super::srsnet::SegNet::load(&w, config)?;
        }
        for name in store.used() {
            out.insert(
                format!("{prefix}.{name}"),
                store.get_any_shape(&name, DType::F32, &Device::Cpu)?,
            );
        }
    }
    Ok(out)
}

/// Splits project-file tensors back into reference-named state dicts: (recon, seg).
pub fn split_reference(tensors: &BTreeMap<String, Tensor>) -> (BTreeMap<String, Tensor>, BTreeMap<String, Tensor>) {
    let mut recon = BTreeMap::new();
    let mut seg = BTreeMap::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("recon.") {
            recon.insert(n.to_string(), t.clone());
        } else if let Some(n) = name.strip_prefix("seg.") {
            seg.insert(n.to_string(), t.clone());
        }
    }
    (recon, seg)
}

/// Writes plain safetensors (no srsnet metadata), e.g. a reference-named state dict.
pub fn write_plain(path: &Path, tensors: &BTreeMap<String, Tensor>, dtype: DType) -> Result<PathBuf> {
    let converted: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(dtype)?.contiguous()?)))
        .collect::<Result<_>>()?;
    write_safetensors(
        path,
        converted.iter().map(|(n, t)| (n.as_str(), t)),
        None,
        "tensor file",
    )?;
    Ok(path.to_path_buf())
}

/// Freshly initialised weights for `config` (PyTorch default init, seeded), prefixed for the
/// project file: both nets in full, as training starts from.
pub fn initialised(config: &ModelConfig, seed: u64) -> Result<BTreeMap<String, Tensor>> {
    let vars = super::weights::VarSource::new(None, seed);
    let w = Weights::from_vars(vars.clone(), DType::F32, &Device::Cpu);
    ReconNet::load(&w.pp(RECON_PREFIX), config)?;
    super::srsnet::SegNet::load(&w.pp(SEG_PREFIX), config)?;
    Ok(vars
        .vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect())
}

/// The target rule of a weights file's `info` (numbers already range-checked).
fn operating_point(info: &serde_json::Value) -> Result<TargetRule, String> {
    let threshold = info["threshold"].as_f64().map_or(0.5, |t| t as f32);
    TargetRule::new(threshold, info["grow"].as_f64().map(|g| g as f32))
}
