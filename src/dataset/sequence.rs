//! Annotated sequences (the DAUB layout): `frames/*.png` in sorted order and either
//! `centroids.csv` with a `frame,x,y` header and one line per target (x = column, y = row,
//! 0-based pixels), or `boxes.csv` with a `frame,x0,y0,x1,y1` header (inclusive pixel bounds).
//! `srsnet synth` writes this layout, the folder source replays it with its truth riding
//! along, `srsnet eval --sequence` scores it and `srsnet label` / `srsnet train` derive masks
//! from it (see [`super::labels`]).
//!
//! One rule for every reader: when an annotation file exists, every frame is annotated, and a
//! frame without a line has no target (any detection on it is a false alarm). A line naming
//! a frame that is not in `frames/` is an error.

use super::folder::{file_name, list_images};
use super::labels::Annotation;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The header line of `centroids.csv`.
pub const CENTROIDS_HEADER: &str = "frame,x,y";

/// The header line of `boxes.csv`.
pub const BOXES_HEADER: &str = "frame,x0,y0,x1,y1";

/// One frame of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceFrame {
    /// The image file.
    pub path: PathBuf,
    /// Its file name, as `centroids.csv` names it.
    pub name: String,
    /// Target centres (x = column, y = row); None when the sequence has no annotations.
    pub truth: Option<Vec<(f64, f64)>>,
    /// Target boxes `[x0, y0, x1, y1]` (inclusive), when the annotations are boxes.
    pub boxes: Option<Vec<[f64; 4]>>,
}

impl SequenceFrame {
    /// The frame's annotations for deriving masks: its boxes when it has them, else its points.
    pub fn annotations(&self) -> Vec<Annotation> {
        match (&self.boxes, &self.truth) {
            (Some(b), _) => b.iter().map(|&b| Annotation::Box(b)).collect(),
            (None, Some(p)) => p.iter().map(|&(x, y)| Annotation::Point(x, y)).collect(),
            (None, None) => vec![],
        }
    }
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

    /// Opens `dir/frames` and, when present, `dir/centroids.csv` or `dir/boxes.csv`.
    pub fn open(dir: &Path) -> Result<Self> {
        let files = list_images(&dir.join("frames"))?;
        let (points, boxes) = (dir.join("centroids.csv"), dir.join("boxes.csv"));
        let (csv, mut rows, is_boxes) = match (points.exists(), boxes.exists()) {
            (true, true) => bail!("{}: has both centroids.csv and boxes.csv; keep one", dir.display()),
            (true, false) => (points.clone(), Some(read_rows(&points, CENTROIDS_HEADER)?), false),
            (false, true) => (boxes.clone(), Some(read_rows(&boxes, BOXES_HEADER)?), true),
            (false, false) => (points, None, false),
        };
        let mut frames = Vec::with_capacity(files.len());
        for path in files {
            let name = file_name(&path);
            let here = rows
                .as_mut()
                .map(|r| r.remove(&name).map(|(_, v)| v).unwrap_or_default());
            let (truth, boxes) = match here {
                None => (None, None),
                Some(v) if is_boxes => {
                    let b: Vec<[f64; 4]> = v.iter().map(|r| [r[0], r[1], r[2], r[3]]).collect();
                    let centres = b.iter().map(|b| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)).collect();
                    (Some(centres), Some(b))
                }
                Some(v) => (Some(v.iter().map(|r| (r[0], r[1])).collect()), None),
            };
            frames.push(SequenceFrame {
                path,
                name,
                truth,
                boxes,
            });
        }
        if let Some(left) = rows.and_then(|t| t.into_values().min_by_key(|(line, _)| *line)) {
            bail!(
                "{}: line {}: names a frame that is not in {}",
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

/// An annotation file by frame name: the line that first names the frame, and its rows of
/// coordinates.
pub type Rows = HashMap<String, (usize, Vec<Vec<f64>>)>;

/// Reads an annotation file whose first line is `header` (`frame` then coordinate columns).
pub fn read_rows(path: &Path, header: &str) -> Result<Rows> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_rows(&text, header).with_context(|| format!("reading {}", path.display()))
}

/// The parser behind [`read_rows`]: blank lines are ignored; a missing header, a malformed
/// line, a non-finite or negative coordinate, or a box with x1 < x0 or y1 < y0 is an error
/// naming the line.
pub fn parse_rows(text: &str, header: &str) -> Result<Rows> {
    let columns: Vec<&str> = header.split(',').collect();
    let mut lines = text.lines().enumerate();
    let first = lines
        .next()
        .map(|(_, l)| l.trim().to_ascii_lowercase().replace(' ', ""));
    if first.as_deref() != Some(header) {
        bail!("line 1: expected the header `{header}`");
    }
    let mut out = Rows::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != columns.len() || f[0].is_empty() {
            bail!("line {n}: expected {header}, found `{line}`");
        }
        let mut coords = Vec::with_capacity(f.len() - 1);
        for (v, what) in f[1..].iter().zip(&columns[1..]) {
            match v.parse::<f64>() {
                Ok(c) if c.is_finite() && c >= 0.0 => coords.push(c),
                _ => bail!("line {n}: {what} `{v}` is not a non-negative number"),
            }
        }
        if coords.len() == 4 && (coords[2] < coords[0] || coords[3] < coords[1]) {
            bail!("line {n}: the box's x1/y1 must not be below its x0/y0");
        }
        out.entry(f[0].to_string()).or_insert((n, Vec::new())).1.push(coords);
    }
    Ok(out)
}

/// Parses `centroids.csv` text (see [`parse_rows`]).
pub fn parse_centroids(text: &str) -> Result<Rows> {
    parse_rows(text, CENTROIDS_HEADER)
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
        assert_eq!(m["a.png"], (2, vec![vec![1.5, 2.0], vec![3.0, 4.0]]));
        assert_eq!(m["b.png"].1, vec![vec![0.0, 0.0]]);
        let b = parse_rows("frame,x0,y0,x1,y1\na.png,1,2,3,4\n", BOXES_HEADER).unwrap();
        assert_eq!(b["a.png"].1, vec![vec![1.0, 2.0, 3.0, 4.0]]);
        let e = format!(
            "{:#}",
            parse_rows("frame,x0,y0,x1,y1\na.png,5,2,3,4\n", BOXES_HEADER).unwrap_err()
        );
        assert!(e.contains("line 2"), "{e}");
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
