//! Reading safetensors weights through a memory map, with errors that name the file and tensor.
//!
//! A [`WeightStore`] is one mapped file; a [`Weights`] is a view of it under a name prefix, so
//! model code mirrors the reference state-dict tree (`vb.pp("conv0_0").pp("0")`) as candle's
//! `VarBuilder` does. The store records which tensors were read, which lets `import` keep
//! exactly the tensors the network uses and drop the ones the reference builds but never calls.

use candle_core::Var;
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype as StDtype, TensorInfo};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a weights file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are named for what they hold: the file, the tensor, ...
pub enum WeightsError {
    /// The file could not be opened or mapped.
    #[error("cannot open weights file {file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
    /// The file is not safetensors (bad header, truncated, ...).
    #[error("{file} is not a valid safetensors file: {reason}")]
    NotSafetensors { file: PathBuf, reason: String },
    /// A tensor the network needs is absent.
    #[error("{file}: tensor `{name}` is missing{hint}")]
    Missing { file: PathBuf, name: String, hint: String },
    /// A tensor has the wrong shape.
    #[error("{file}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        file: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor has a dtype we cannot read.
    #[error("{file}: tensor `{name}` has dtype {found}, expected F16, BF16, F32, F64 or U8")]
    Dtype { file: PathBuf, name: String, found: String },
    /// A metadata entry is missing or malformed.
    #[error("{file}: metadata `{key}`: {reason}")]
    Metadata { file: PathBuf, key: String, reason: String },
    /// Candle failed on a tensor of the file.
    #[error("{file}: tensor `{name}`: {source}")]
    Candle {
        file: PathBuf,
        name: String,
        source: Box<candle_core::Error>,
    },
}

/// One memory-mapped safetensors file.
pub struct WeightStore {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    metadata: HashMap<String, String>,
    used: Mutex<BTreeSet<String>>,
}

impl WeightStore {
    /// Maps a safetensors file; an error names the file.
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
        let (header_len, header) = SafeTensors::read_metadata(&mmap[..]).map_err(|e| WeightsError::NotSafetensors {
            file: path.clone(),
            reason: e.to_string(),
        })?;
        // read_metadata checks that the header's offsets cover the buffer exactly, so a
        // truncated file is rejected here rather than when a tensor is read.
        let tensors = header.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
        let metadata = header.metadata().clone().unwrap_or_default();
        Ok(Arc::new(Self {
            path,
            mmap,
            data_start: 8 + header_len,
            tensors,
            metadata,
            used: Mutex::new(BTreeSet::new()),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's free-form string metadata (`__metadata__`).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.metadata.clone()
    }

    /// Every tensor name in the file.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    /// True when the file holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names read so far through [`WeightStore::get`].
    pub fn used(&self) -> BTreeSet<String> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Reads tensor `name`, checks its shape, and converts it to `dtype` on `device`.
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor, WeightsError> {
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
    pub fn get_any_shape(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor, WeightsError> {
        let info = self.tensors.get(name).ok_or_else(|| WeightsError::Missing {
            file: self.path.clone(),
            name: name.to_string(),
            hint: self.hint_for_missing(name),
        })?;
        let src_dtype = match info.dtype {
            StDtype::F32 => DType::F32,
            StDtype::F16 => DType::F16,
            StDtype::BF16 => DType::BF16,
            StDtype::F64 => DType::F64,
            // Masks (calibration bad-pixel maps) are stored as bytes.
            StDtype::U8 => DType::U8,
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
        let candle = |source: candle_core::Error| WeightsError::Candle {
            file: self.path.clone(),
            name: name.to_string(),
            source: Box::new(source),
        };
        let t = Tensor::from_raw_buffer(bytes, src_dtype, &info.shape, &Device::Cpu).map_err(candle)?;
        let t = t.to_dtype(dtype).and_then(|t| t.to_device(device)).map_err(candle)?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        Ok(t)
    }

    /// Points at a likely cause: a prefix mismatch (project file vs reference file) is common.
    fn hint_for_missing(&self, name: &str) -> String {
        let last = name.rsplit('.').next().unwrap_or(name);
        let tail = name.split_once('.').map(|(_, t)| t).unwrap_or(name);
        let tensors = &self.tensors;
        if let Some(similar) = tensors.keys().find(|k| k.ends_with(tail) && k.as_str() != name) {
            return format!(
                " (the file has `{similar}`: is this a file for the other network, or a different prefix?)"
            );
        }
        format!(
            " ({} tensors in the file; none ends in `{last}` at this path)",
            tensors.len()
        )
    }
}

/// How a parameter is initialised when it is created rather than read (PyTorch defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// U(−b, b); PyTorch's default for conv weights and biases is b = 1/√fan_in.
    Uniform(f64),
    /// Every element set to this value.
    Const(f64),
}

impl Init {
    /// PyTorch's default for a conv's weight and bias: U(±1/√fan_in), fan_in = (Cin/groups)·K².
    pub fn pytorch_conv(fan_in: usize) -> Self {
        Init::Uniform(1.0 / (fan_in as f64).sqrt())
    }
}

/// Where tensors come from.
#[derive(Clone)]
enum Source {
    /// Read-only tensors from a file (inference).
    File(Arc<WeightStore>),
    /// Trainable variables, created on first request: read from `from` if given, else
    /// initialised; every variable is recorded so a trainer can optimise and save them.
    Vars(Arc<VarSource>),
}

/// The variables of a trainable model, by full name.
pub struct VarSource {
    from: Option<Arc<WeightStore>>,
    /// Prefix of the names in `from` (a checkpoint stores `var.<name>`).
    from_prefix: String,
    /// Every variable must come from `from` (fine-tuning): a missing tensor is an error, not
    /// a fresh initialisation that would silently train part of the net from scratch.
    strict: bool,
    vars: Mutex<BTreeMap<String, Var>>,
    rng: Mutex<ChaCha8Rng>,
}

impl VarSource {
    /// Variables read from `from` (when present there) or initialised with a seeded RNG.
    pub fn new(from: Option<Arc<WeightStore>>, seed: u64) -> Arc<Self> {
        Self::with_prefix(from, "", seed)
    }

    /// As [`VarSource::new`], reading `from_prefix<name>` from `from`.
    pub fn with_prefix(from: Option<Arc<WeightStore>>, from_prefix: &str, seed: u64) -> Arc<Self> {
        Self::build(from, from_prefix, false, seed)
    }

    fn build(from: Option<Arc<WeightStore>>, from_prefix: &str, strict: bool, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            from,
            from_prefix: from_prefix.to_string(),
            strict,
            vars: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        })
    }

    /// Variables that all start from `from` (fine-tuning); a tensor `from` lacks, or holds in
    /// another shape, is an error naming the file and the tensor.
    pub fn strict(from: Arc<WeightStore>, seed: u64) -> Arc<Self> {
        Self::build(Some(from), "", true, seed)
    }

    /// Creates the variable `name` with the value `t` before the model asks for it, so that it
    /// does not come from the file (a tensor whose shape the new model changes).
    pub fn preset(&self, name: &str, t: Tensor) -> Result<(), WeightsError> {
        let var = Var::from_tensor(&t).map_err(|source| WeightsError::Candle {
            file: PathBuf::from("<preset>"),
            name: name.to_string(),
            source: Box::new(source),
        })?;
        self.vars
            .lock()
            .expect("variable map lock")
            .insert(name.to_string(), var);
        Ok(())
    }

    /// The variable `name`, if created.
    pub fn var(&self, name: &str) -> Option<Var> {
        self.vars.lock().ok().and_then(|v| v.get(name).cloned())
    }

    /// All variables created so far, by full name.
    pub fn vars(&self) -> BTreeMap<String, Var> {
        self.vars.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn get(
        &self,
        name: &str,
        shape: &[usize],
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, WeightsError> {
        let mut vars = self.vars.lock().expect("variable map lock");
        if let Some(v) = vars.get(name) {
            return Ok(v.as_tensor().clone());
        }
        let origin = PathBuf::from("<initialised>");
        let candle = |source: candle_core::Error| WeightsError::Candle {
            file: origin.clone(),
            name: name.to_string(),
            source: Box::new(source),
        };
        let t = match &self.from {
            Some(store) if self.strict || store.contains(&format!("{}{name}", self.from_prefix)) => {
                store.get(&format!("{}{name}", self.from_prefix), shape, dtype, device)?
            }
            _ => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = match init {
                    Init::Const(c) => vec![c as f32; n],
                    Init::Uniform(b) => {
                        let mut rng = self.rng.lock().expect("rng lock");
                        (0..n).map(|_| rng.gen_range(-b..b) as f32).collect()
                    }
                };
                Tensor::from_vec(values, shape, device)
                    .and_then(|t| t.to_dtype(dtype))
                    .map_err(candle)?
            }
        };
        let var = Var::from_tensor(&t).map_err(candle)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }
}

/// A view of a weights source under a prefix, with the dtype and device tensors are loaded to.
#[derive(Clone)]
pub struct Weights {
    source: Source,
    prefix: String,
    dtype: DType,
    device: Device,
    fold_bn: bool,
    bn_mode: BnMode,
}

/// Shared switch between BatchNorm's training mode (batch statistics, running statistics
/// updated) and eval mode (running statistics). Layers built from one view share one switch,
/// so a trainer flips a whole network with one call.
#[derive(Clone, Debug)]
pub struct BnMode {
    training: Arc<AtomicBool>,
    /// The running-statistics momentum as f64 bits (PyTorch's default 0.1).
    momentum: Arc<AtomicU64>,
}

impl Default for BnMode {
    fn default() -> Self {
        Self {
            training: Arc::new(AtomicBool::new(false)),
            momentum: Arc::new(AtomicU64::new(0.1f64.to_bits())),
        }
    }
}

impl BnMode {
    /// Switches BatchNorm between training (batch statistics) and inference.
    pub fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    /// True while BatchNorm uses batch statistics.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// Momentum of the running statistics; `1/(k+1)` at the k-th batch gives their plain average.
    pub fn set_momentum(&self, momentum: f64) {
        self.momentum.store(momentum.to_bits(), Ordering::Relaxed);
    }

    /// The running-statistics momentum.
    pub fn momentum(&self) -> f64 {
        f64::from_bits(self.momentum.load(Ordering::Relaxed))
    }
}

impl Weights {
    /// Weights read from `store` in `dtype` on `device`.
    pub fn new(store: Arc<WeightStore>, dtype: DType, device: &Device) -> Self {
        Self {
            source: Source::File(store),
            prefix: String::new(),
            dtype,
            device: device.clone(),
            fold_bn: false,
            bn_mode: BnMode::default(),
        }
    }

    /// Trainable variables (see [`VarSource`]).
    pub fn from_vars(vars: Arc<VarSource>, dtype: DType, device: &Device) -> Self {
        Self {
            source: Source::Vars(vars),
            prefix: String::new(),
            dtype,
            device: device.clone(),
            fold_bn: false,
            bn_mode: BnMode::default(),
        }
    }

    /// Whether layers built from this view fold each BatchNorm into the convolution before it
    /// (inference only: the folded model has no BatchNorm left to train).
    pub fn with_bn_folding(mut self, fold: bool) -> Self {
        self.fold_bn = fold;
        self
    }

    /// The same view loading in another dtype (folding is done in f32, then cast).
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// The BatchNorm mode switch layers built from this view follow.
    pub fn bn_mode(&self) -> &BnMode {
        &self.bn_mode
    }

    /// The same view with another mode switch (one per network being trained).
    pub fn with_bn_mode(mut self, mode: BnMode) -> Self {
        self.bn_mode = mode;
        self
    }

    /// A variable the layer will update itself (BatchNorm running statistics), when the
    /// source is trainable; `None` for read-only sources.
    pub fn get_var(&self, shape: &[usize], name: &str, init: Init) -> Result<(Tensor, Option<Var>), WeightsError> {
        let full = self.full_name(name);
        match &self.source {
            Source::File(store) => Ok((store.get(&full, shape, self.dtype, &self.device)?, None)),
            Source::Vars(vars) => {
                let t = vars.get(&full, shape, init, self.dtype, &self.device)?;
                Ok((t, vars.var(&full)))
            }
        }
    }

    /// True when tensors are trainable variables (training), false when read from a file.
    pub fn is_trainable(&self) -> bool {
        matches!(self.source, Source::Vars(_))
    }

    /// True when BatchNorms are folded into the preceding convolutions.
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
        Self { prefix, ..self.clone() }
    }

    /// The full tensor name of `name` under this view's prefix.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// Tensor `name` of this shape; `init` says how to create it when the source initialises.
    pub fn get(&self, shape: &[usize], name: &str, init: Init) -> Result<Tensor, WeightsError> {
        let full = self.full_name(name);
        match &self.source {
            Source::File(store) => store.get(&full, shape, self.dtype, &self.device),
            Source::Vars(vars) => vars.get(&full, shape, init, self.dtype, &self.device),
        }
    }

    /// The dtype tensors are loaded in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors are loaded on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The file tensors come from, for error messages.
    pub fn origin(&self) -> PathBuf {
        match &self.source {
            Source::File(store) => store.path().to_path_buf(),
            Source::Vars(v) => v
                .from
                .as_ref()
                .map(|s| s.path().to_path_buf())
                .unwrap_or_else(|| "<initialised>".into()),
        }
    }
}
