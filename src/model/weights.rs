//! Reading safetensors weights through a memory map, with errors that name the file and tensor.
//!
//! A [`WeightStore`] is one mapped file; a [`Weights`] is a view of it under a name prefix, so
//! model code mirrors the reference state-dict tree (`vb.pp("conv0_0").pp("0")`) as candle's
//! `VarBuilder` does. The store records which tensors were read, which lets `import` keep
//! exactly the tensors the network uses and drop the ones the reference builds but never calls.

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, Metadata};
use safetensors::SafeTensors;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a weights file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot open weights file {file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} is not a valid safetensors file: {reason}")]
    NotSafetensors { file: PathBuf, reason: String },
    #[error("{file}: tensor `{name}` is missing{hint}")]
    Missing {
        file: PathBuf,
        name: String,
        hint: String,
    },
    #[error("{file}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        file: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{file}: tensor `{name}` has dtype {found}, expected F32, F16 or BF16")]
    Dtype {
        file: PathBuf,
        name: String,
        found: String,
    },
    #[error("{file}: metadata `{key}`: {reason}")]
    Metadata {
        file: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{file}: tensor `{name}`: {source}")]
    Candle {
        file: PathBuf,
        name: String,
        source: candle_core::Error,
    },
}

/// One memory-mapped safetensors file.
pub struct WeightStore {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    header: Metadata,
    used: Mutex<BTreeSet<String>>,
}

impl WeightStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>, WeightsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| WeightsError::Io {
            file: path.clone(),
            source,
        })?;
        // SAFETY: the map is read-only; a file truncated while mapped is the user's error and
        // would surface as SIGBUS, as with any mmap-based loader (candle's included).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| WeightsError::Io {
            file: path.clone(),
            source,
        })?;
        let (header_len, header) =
            SafeTensors::read_metadata(&mmap[..]).map_err(|e| WeightsError::NotSafetensors {
                file: path.clone(),
                reason: e.to_string(),
            })?;
        // read_metadata checks that the header's offsets cover the buffer exactly, so a
        // truncated file is rejected here rather than when a tensor is read.
        Ok(Arc::new(Self {
            path,
            mmap,
            data_start: 8 + header_len,
            header,
            used: Mutex::new(BTreeSet::new()),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's free-form string metadata (`__metadata__`).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.header.metadata().clone().unwrap_or_default()
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.header.tensors().keys().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.header.tensors().contains_key(name)
    }

    /// Names read so far through [`WeightStore::get`].
    pub fn used(&self) -> BTreeSet<String> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Reads tensor `name`, checks its shape, and converts it to `dtype` on `device`.
    pub fn get(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, WeightsError> {
        let t = self.get_any_shape(name, dtype, device)?;
        if t.dims() != shape {
            return Err(WeightsError::Shape {
                file: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    /// Reads tensor `name` whatever its shape.
    pub fn get_any_shape(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, WeightsError> {
        let tensors = self.header.tensors();
        let info = tensors.get(name).ok_or_else(|| WeightsError::Missing {
            file: self.path.clone(),
            name: name.to_string(),
            hint: self.hint_for_missing(name),
        })?;
        let src_dtype = match info.dtype {
            StDtype::F32 => DType::F32,
            StDtype::F16 => DType::F16,
            StDtype::BF16 => DType::BF16,
            other => {
                return Err(WeightsError::Dtype {
                    file: self.path.clone(),
                    name: name.into(),
                    found: format!("{other:?}"),
                })
            }
        };
        let (a, b) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + a..self.data_start + b];
        let candle = |source| WeightsError::Candle {
            file: self.path.clone(),
            name: name.to_string(),
            source,
        };
        let t =
            Tensor::from_raw_buffer(bytes, src_dtype, &info.shape, &Device::Cpu).map_err(candle)?;
        let t = t
            .to_dtype(dtype)
            .and_then(|t| t.to_device(device))
            .map_err(candle)?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        Ok(t)
    }

    /// Points at a likely cause: a prefix mismatch (project file vs reference file) is common.
    fn hint_for_missing(&self, name: &str) -> String {
        let last = name.rsplit('.').next().unwrap_or(name);
        let tail = name.split_once('.').map(|(_, t)| t).unwrap_or(name);
        let tensors = self.header.tensors();
        if let Some(similar) = tensors
            .keys()
            .find(|k| k.ends_with(tail) && k.as_str() != name)
        {
            return format!(" (the file has `{similar}`: is this a file for the other network, or a different prefix?)");
        }
        format!(
            " ({} tensors in the file; none ends in `{last}` at this path)",
            tensors.len()
        )
    }
}

/// A view of a [`WeightStore`] under a prefix, with the dtype and device tensors are loaded to.
#[derive(Clone)]
pub struct Weights {
    store: Arc<WeightStore>,
    prefix: String,
    dtype: DType,
    device: Device,
    fold_bn: bool,
}

impl Weights {
    pub fn new(store: Arc<WeightStore>, dtype: DType, device: &Device) -> Self {
        Self {
            store,
            prefix: String::new(),
            dtype,
            device: device.clone(),
            fold_bn: false,
        }
    }

    /// Whether layers built from this view fold each BatchNorm into the convolution before it
    /// (inference only: the folded model has no BatchNorm left to train).
    pub fn with_bn_folding(mut self, fold: bool) -> Self {
        self.fold_bn = fold;
        self
    }

    pub fn fold_bn(&self) -> bool {
        self.fold_bn
    }

    /// The view one level down: `w.pp("conv0_0").pp(0)` reads `conv0_0.0.*`.
    pub fn pp(&self, name: impl ToString) -> Self {
        let name = name.to_string();
        let prefix = if self.prefix.is_empty() {
            name
        } else {
            format!("{}.{}", self.prefix, name)
        };
        Self {
            prefix,
            ..self.clone()
        }
    }

    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor, WeightsError> {
        self.store
            .get(&self.full_name(name), shape, self.dtype, &self.device)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.store.contains(&self.full_name(name))
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn store(&self) -> &Arc<WeightStore> {
        &self.store
    }
}
