//! A plain folder of images: every file with an image extension, in sorted order.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "bmp", "tif", "tiff", "jpg", "jpeg", "pgm"];

/// True when `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A path's file name as a string ("" when it has none or it is not UTF-8): how annotation
/// and list files name frames.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// The image files of `dir`, sorted by name; an error when the folder cannot be read or
/// holds no image.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read image folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no image files ({}) in {}", IMAGE_EXTENSIONS.join(", "), dir.display());
    }
    Ok(files)
}
