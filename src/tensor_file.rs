//! Writing safetensors files (weights, checkpoints, calibration profiles) in one way: whole,
//! or not at all, with the permissions of any file the user creates.

use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `tensors` (and `meta`, the file's `__metadata__`) as a safetensors file at `path`.
/// The bytes go to a sibling temporary file that is then renamed over `path`, so an
/// interrupted write (a full disk, Ctrl-C) never leaves a truncated file, an earlier file at
/// `path` stays whole until the new one is complete, and a reader that has it mapped keeps
/// its contents. `what` names the file in errors ("weights file", "checkpoint", ...).
///
/// Why not `safetensors::serialize_to_file`: since 0.8 it writes through `tempfile`, which
/// creates files readable by their owner only (mode 0600, whatever the umask), so weights
/// exported by one user could not be read by the service account that runs the pipeline.
/// Here the file is created as any other (0666 less the umask).
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    meta: Option<HashMap<String, String>>,
    what: &str,
) -> Result<()> {
    let bytes = safetensors::serialize(tensors, meta).with_context(|| format!("encoding {what} {}", path.display()))?;
    let partial = partial_path(path);
    let written = std::fs::File::create(&partial)
        .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&partial, path));
    if let Err(e) = written {
        // Best effort: the partial file is ours and worthless; the error that matters is `e`.
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("writing {what} {}", path.display()));
    }
    Ok(())
}

/// `DIR/.NAME.partial`: beside the file, so that the rename stays on one file system, and
/// hidden, so that a folder listing does not offer it as a weights file.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("srsnet-tensor-file-{name}-{}", std::process::id()));
        // Empty, so that counting what is left in it counts only this test's files.
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_written_file_reads_back_and_has_the_permissions_of_any_new_file() -> Result<()> {
        let d = dir("ok");
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)?;
        let path = d.join("w.safetensors");
        std::fs::write(&path, b"an older file, replaced whole")?;
        let meta = HashMap::from([("format".to_string(), "test".to_string())]);
        write_safetensors(&path, [("t", &t)], Some(meta), "weights file")?;
        let back = candle_core::safetensors::load(&path, &Device::Cpu)?;
        assert_eq!(back["t"].to_vec1::<f32>()?, vec![1.0, 2.0, 3.0]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = d.join("plain");
            std::fs::write(&plain, b"")?;
            let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode(&path)?, mode(&plain)?, "not the umask's permissions");
        }
        let left: Vec<_> = std::fs::read_dir(&d)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "a partial file was left behind: {left:?}");
        Ok(())
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_nothing_behind() -> Result<()> {
        let d = dir("bad");
        let t = Tensor::new(&[1f32], &Device::Cpu)?;
        // A directory where the file should go: the rename fails after the bytes are written.
        let path = d.join("taken.safetensors");
        std::fs::create_dir_all(path.join("inside"))?;
        let e = format!(
            "{:#}",
            write_safetensors(&path, [("t", &t)], None, "checkpoint").unwrap_err()
        );
        assert!(
            e.contains("writing checkpoint") && e.contains("taken.safetensors"),
            "{e}"
        );
        assert!(!partial_path(&path).exists(), "the partial file was left behind");
        assert!(path.join("inside").is_dir(), "what was there was touched");
        // A folder that does not exist.
        let e = format!(
            "{:#}",
            write_safetensors(&d.join("no/such.safetensors"), [("t", &t)], None, "weights file").unwrap_err()
        );
        assert!(e.contains("no/such.safetensors"), "{e}");
        Ok(())
    }
}
