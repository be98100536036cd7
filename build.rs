//! With the `cuda` feature, compiles srsnet's own CUDA kernels (`src/cuda/*.cu`) to PTX with
//! nvcc, for the compute capability Candle's kernels are built for (`CUDA_COMPUTE_CAP`, 87 for
//! the Jetson Orin by default). PTX is forward compatible: the driver compiles it for the GPU
//! it runs on, so one build serves an Orin and a desktop card, provided nvcc is no newer than
//! the driver. Without the feature this script does nothing.

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &[&str] = &["dpconv"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=SRSNET_CUDA_STUBS");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    // A machine without the CUDA driver and libraries links against stubs of them
    // (scripts/gpu-check.sh makes them); the binary then loads the real ones where it runs.
    if let Some(dir) = std::env::var_os("SRSNET_CUDA_STUBS") {
        println!("cargo:rustc-link-search=native={}", PathBuf::from(dir).display());
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "87".into());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for name in KERNELS {
        let src = format!("src/cuda/{name}.cu");
        println!("cargo:rerun-if-changed={src}");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", &format!("-arch=compute_{cap}"), "-O3", "-o"])
            .arg(&ptx)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{nvcc} failed on {src} ({s}); see its messages above"),
            Err(e) => panic!(
                "cannot run {nvcc} to compile {src}: {e}. The `cuda` feature needs nvcc on PATH (or NVCC=path); \
                 README.md, \"Building with CUDA\", says where to get one"
            ),
        }
    }
}
