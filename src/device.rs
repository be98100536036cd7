//! Choosing where the model runs: `cpu` (f32) or `cuda[:N]` (f16, with the `cuda` feature).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};

/// Where a model should run, as `--device` names it (parsed without opening anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU, f32.
    #[default]
    Cpu,
    /// CUDA device N, f16.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(spec: &str) -> Result<Self> {
        match spec {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            s if s.starts_with("cuda:") => {
                Ok(Self::Cuda(s[5..].parse::<usize>().with_context(|| {
                    format!("device `{s}`: expected cuda:N with N a GPU index")
                })?))
            }
            other => bail!("unknown device `{other}`: expected cpu, cuda or cuda:N"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device (CUDA needs a build with the `cuda` feature).
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => cuda_device(n),
        }
    }
}

/// Parses and opens `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.open()
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    let what = match CudaContext::device_count() {
        Ok(0) => "this machine has no CUDA device".to_string(),
        Ok(n) if ordinal >= n as usize => format!(
            "this machine has {n} CUDA device{} (cuda:0{}); pick one with --device cuda:N",
            if n == 1 { "" } else { "s" },
            if n == 1 {
                String::new()
            } else {
                format!(" to cuda:{}", n - 1)
            }
        ),
        Ok(_) => "see the CUDA error above (out of memory, or a device in exclusive use)".to_string(),
        Err(e) => format!("the CUDA driver did not initialise ({e}); check the NVIDIA driver with `nvidia-smi`"),
    };
    Device::new_cuda(ordinal)
        .with_context(|| format!("cannot open CUDA device cuda:{ordinal}: {what}, or run on the CPU with --device cpu"))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device> {
    bail!(
        "device cuda:{ordinal} asked for, but this srsnet was built without CUDA support; \
         rebuild with `cargo build --release --features cuda` (needs nvcc and the CUDA toolkit)"
    )
}

/// The compute dtype for a device: f32 on CPU, f16 on CUDA.
pub fn compute_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::F16
    } else {
        DType::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_computes_in_f32() {
        let d = parse_device("cpu").unwrap();
        assert!(d.is_cpu());
        assert_eq!(compute_dtype(&d), DType::F32);
    }

    #[test]
    fn unknown_device_is_an_error() {
        assert!(parse_device("tpu").unwrap_err().to_string().contains("unknown device"));
        assert!(parse_device("cuda:x").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_build() {
        let err = parse_device("cuda:0").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
