//! Choosing where the model runs: `cpu` (f32) or `cuda[:N]` (f16, with the `cuda` feature).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s if s.starts_with("cuda:") => s[5..]
            .parse::<usize>()
            .with_context(|| format!("device `{s}`: expected cuda:N with N a GPU index"))?,
        other => bail!("unknown device `{other}`: expected cpu, cuda or cuda:N"),
    };
    cuda_device(ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
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
