//! Centroid-annotated sequences (the DAUB layout): `frames/*.png` in sorted order and
//! `centroids.csv` with a `frame,x,y` header and one line per target (x = column, y = row,
//! 0-based pixels). `srsnet synth` writes this layout, the folder source replays it with its
//! truth riding along, and `srsnet eval --sequence` scores it.
//!
//! One rule for every reader: when `centroids.csv` exists, every frame is annotated, and a
//! frame without a line has no target (any detection on it is a false alarm). A line naming
//! a frame that is not in `frames/` is an error.

use super::folder::list_images;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The header line of `centroids.csv`.
pub const CENTROIDS_HEADER: &str = "frame,x,y";

/// One frame of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceFrame {
    /// The image file.
    pub path: PathBuf,
    /// Its file name, as `centroids.csv` names it.
    pub name: String,
    /// Target centres (x = column, y = row); None when the sequence has no annotations.
    pub truth: Option<Vec<(f64, f64)>>,
}

/// A sequence folder: its frames in order, each with its annotations.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// The sequence folder.
    pub dir: PathBuf,
    /// Its frames, sorted by file name.
    pub frames: Vec<SequenceFrame>,
}

impl Sequence {
    /// True when `dir` has the sequence layout (a `frames/` folder).
    pub fn is_sequence(dir: &Path) -> bool {
        dir.join("frames").is_dir()
    }

    /// Opens `dir/frames` and, when present, `dir/centroids.csv`.
    pub fn open(dir: &Path) -> Result<Self> {
        let files = list_images(&dir.join("frames"))?;
        let csv = dir.join("centroids.csv");
        let mut truth = if csv.exists() {
            Some(read_centroids(&csv)?)
        } else {
            None
        };
        let mut frames = Vec::with_capacity(files.len());
        for path in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let points = truth
                .as_mut()
                .map(|t| t.remove(&name).map(|(_, p)| p).unwrap_or_default());
            frames.push(SequenceFrame {
                path,
                name,
                truth: points,
            });
        }
        if let Some(left) = truth.and_then(|t| t.into_values().min_by_key(|(line, _)| *line)) {
            bail!(
                "{}:{}: names a frame that is not in {}",
                csv.display(),
                left.0,
                dir.join("frames").display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            frames,
        })
    }

    /// True when the frames carry annotations.
    pub fn is_annotated(&self) -> bool {
        self.frames.first().is_some_and(|f| f.truth.is_some())
    }
}

/// `centroids.csv` by frame name: the line that first names the frame, and its target centres.
pub type Centroids = HashMap<String, (usize, Vec<(f64, f64)>)>;

/// Reads `centroids.csv`: frame name → (first line number, target centres). Blank lines are
/// ignored; a missing header, a malformed line or a non-finite or negative coordinate is an
/// error naming the file and line.
pub fn read_centroids(path: &Path) -> Result<Centroids> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_centroids(&text).with_context(|| format!("reading {}", path.display()))
}

/// The parser behind [`read_centroids`], on the file's text.
pub fn parse_centroids(text: &str) -> Result<Centroids> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.trim().to_ascii_lowercase().replace(' ', ""));
    if header.as_deref() != Some(CENTROIDS_HEADER) {
        bail!("line 1: expected the header `{CENTROIDS_HEADER}`");
    }
    let mut out = Centroids::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 3 || f[0].is_empty() {
            bail!("line {n}: expected frame,x,y, found `{line}`");
        }
        let coord = |s: &str, what: &str| -> Result<f64> {
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => bail!("line {n}: {what} `{s}` is not a non-negative number"),
            }
        };
        let p = (coord(f[1], "x")?, coord(f[2], "y")?);
        out.entry(f[0].to_string()).or_insert((n, Vec::new())).1.push(p);
    }
    Ok(out)
}

/// Writes `centroids.csv` for `rows` of (frame name, x, y).
pub fn write_centroids(path: &Path, rows: &[(String, f64, f64)]) -> Result<()> {
    let mut csv = format!("{CENTROIDS_HEADER}\n");
    for (name, x, y) in rows {
        csv.push_str(&format!("{name},{x:.3},{y:.3}\n"));
    }
    crate::image_io::write_file(path, csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_names_bad_lines() {
        let m = parse_centroids("frame,x,y\na.png,1.5,2\n\na.png,3,4\nb.png,0,0\n").unwrap();
        assert_eq!(m["a.png"], (2, vec![(1.5, 2.0), (3.0, 4.0)]));
        assert_eq!(m["b.png"].1, vec![(0.0, 0.0)]);
        for (text, needle) in [
            ("garbage\n1,2,3\n", "line 1"),
            ("", "line 1"),
            ("frame,x,y\na.png,1\n", "line 2"),
            ("frame,x,y\na.png,1,2\nb.png,nan,2\n", "line 3"),
            ("frame,x,y\na.png,-1,2\n", "line 2"),
            ("frame,x,y\n,1,2\n", "line 2"),
        ] {
            let e = format!("{:#}", parse_centroids(text).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
