//! The implementations of the `srsnet` subcommands (the binary only parses arguments).

pub mod bench;
pub mod calibrate;
pub mod eval;
pub mod infer;
pub mod run;
pub mod train;
pub mod weights;

use std::path::{Path, PathBuf};

/// The shipped default weights: `models/srsnet-lite.safetensors` in the working directory,
/// else beside the sources this binary was built from.
pub fn default_weights() -> PathBuf {
    let rel = Path::new("models/srsnet-lite.safetensors");
    if rel.exists() {
        return rel.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
