//! Training recipes: which datasets a run draws from, with what weight, and what it validates
//! on. A recipe is a small JSON file (saved into the run folder and the weights' metadata);
//! the command-line flags (`--data`, `--images`/`--masks`, `--recon-extra`, `--dataset`,
//! `--val`) build the same structure.
//!
//! ```json
//! {
//!   "train": [
//!     { "kind": "sirst", "root": "../shared/data/sirst", "split": "splits/train.txt" },
//!     { "kind": "sequence", "dir": "../shared/data/daub/sequence1", "weight": 0.5 },
//!     { "kind": "negatives", "dir": "../shared/data/backgrounds-extra", "exclude": "val-backgrounds.txt", "weight": 0.3 },
//!     { "kind": "unlabeled", "dir": "more-ir-frames" }
//!   ],
//!   "validation": [
//!     { "kind": "sirst", "root": "../shared/data/sirst", "split": "splits/val.txt" },
//!     { "kind": "sequence", "dir": "../shared/data/daub/sequence5" },
//!     { "kind": "negatives", "dir": "../shared/data/backgrounds-extra", "list": "val-backgrounds.txt" }
//!   ]
//! }
//! ```
//!
//! Relative paths are relative to the recipe file's folder, except a SIRST `split`, which is
//! relative to its dataset's root (as `splits/train.txt` is). Kinds:
//! - `sirst`/`pairs`: images with masks, resized to the training size (the reference's recipe),
//!   or with `"scale": "native"` cut into training-size tiles at native resolution, as the
//!   other kinds are ([`Scale`]);
//! - `sequence`: frames with `centroids.csv` or `boxes.csv`, masks derived by the label rule
//!   ([`crate::dataset::labels`]); a frame with a target whose mask cannot be derived is left
//!   out (its mask would be wrong), and counted;
//! - `negatives`: target-free frames, cut into training-size tiles at native resolution with
//!   empty masks (hard negatives);
//! - `unlabeled`: images for the reconstruction stage only.
//!
//! Every labelled image also trains the reconstruction net (the paper's Table 7: more data for
//! R helps S). A dataset's `weight` scales how many of its samples an epoch draws (1: each
//! once; 0.5: a different half each epoch; 2: each twice).

use super::data::{load_pairs, load_unlabeled, resize_sample, Sample, Skipped};
use crate::dataset::folder::{file_name, list_images};
use crate::dataset::labels::{derive_frame, LabelRule};
use crate::dataset::pairs::{read_split, PairLayout};
use crate::dataset::sequence::Sequence;
use crate::dataset::Truth;
use crate::image_io::{read_frame, Frame};
use crate::preprocess::pad_edge;
use crate::temporal::MotionInput;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

fn one() -> f64 {
    1.0
}

/// One dataset of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatasetSpec {
    /// The SIRST layout under `root` (`images/`, `masks/NAME_pixels0.png`).
    Sirst {
        /// Dataset folder.
        root: PathBuf,
        /// Split file of NAMEs, relative to `root` (None: every image).
        #[serde(default)]
        split: Option<PathBuf>,
        /// Sampling weight.
        #[serde(default = "one")]
        weight: f64,
        /// How training samples are sized.
        #[serde(default, skip_serializing_if = "Scale::is_resize")]
        scale: Scale,
    },
    /// Any images + masks folders.
    Pairs {
        /// Folder of images.
        images: PathBuf,
        /// Folder of masks.
        masks: PathBuf,
        /// Appended to an image's NAME to name its mask.
        #[serde(default)]
        mask_suffix: String,
        /// Image and mask extension.
        #[serde(default = "png")]
        extension: String,
        /// Split file of NAMEs (None: every image).
        #[serde(default)]
        split: Option<PathBuf>,
        /// Sampling weight.
        #[serde(default = "one")]
        weight: f64,
        /// How training samples are sized.
        #[serde(default, skip_serializing_if = "Scale::is_resize")]
        scale: Scale,
    },
    /// A sequence with point or box annotations.
    Sequence {
        /// Sequence folder (`frames/` + `centroids.csv` or `boxes.csv`).
        dir: PathBuf,
        /// Sampling weight.
        #[serde(default = "one")]
        weight: f64,
    },
    /// Target-free frames.
    Negatives {
        /// Folder of images.
        dir: PathBuf,
        /// Only these file names (a file with one per line).
        #[serde(default)]
        list: Option<PathBuf>,
        /// Not these file names (a file with one per line): a held-out list.
        #[serde(default)]
        exclude: Option<PathBuf>,
        /// Sampling weight.
        #[serde(default = "one")]
        weight: f64,
    },
    /// Images for the reconstruction stage only.
    Unlabeled {
        /// Folder of images.
        dir: PathBuf,
    },
}

/// How a labelled image set (`sirst`, `pairs`) becomes training samples. Validation and
/// `srsnet eval` always see images at native resolution.
///
/// Why `native`: resizing stretches every image to the training size (SIRST's 135–456 px wide
/// frames to 256×256), so the net trains on targets up to 1.8× smaller (and distorted) than
/// the same targets at evaluation. The lost targets of the v21–v23 nets are mostly those:
/// on SIRST train, v22 at 0.5 misses 13 of the 38 targets of 60 px or more against 5 of the
/// 289 smaller ones (models/README.md, "Which SIRST targets the nets lose").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Resized to the training size (the reference's recipe).
    #[default]
    Resize,
    /// Cut into training-size tiles at native resolution ([`tiles`]), as sequences and
    /// target-free frames are.
    Native,
}

impl Scale {
    fn is_resize(&self) -> bool {
        *self == Scale::Resize
    }
}

fn png() -> String {
    "png".into()
}

/// A run's data: what it trains on and what it validates (selects) on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Training datasets.
    pub train: Vec<DatasetSpec>,
    /// Validation sets: checkpoint and operating-point selection only, never training.
    #[serde(default)]
    pub validation: Vec<DatasetSpec>,
}

impl Recipe {
    /// Reads a recipe file; relative paths become relative to its folder, and every named
    /// dataset must exist.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading recipe {}", path.display()))?;
        let mut r: Recipe =
            serde_json::from_str(&text).with_context(|| format!("recipe {}: not a valid recipe", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for d in r.train.iter_mut().chain(r.validation.iter_mut()) {
            d.rebase(base);
        }
        r.check().with_context(|| format!("recipe {}", path.display()))?;
        Ok(r)
    }

    /// Checks that every dataset exists and every weight is usable.
    pub fn check(&self) -> Result<()> {
        if !self.train.iter().any(|d| !matches!(d, DatasetSpec::Unlabeled { .. })) {
            bail!("no labelled or target-free training dataset");
        }
        for d in self.train.iter().chain(&self.validation) {
            d.check()?;
        }
        if let Some(d) = self
            .validation
            .iter()
            .find(|d| matches!(d, DatasetSpec::Unlabeled { .. }))
        {
            bail!("{}: unlabeled data cannot validate", d.path().display());
        }
        Ok(())
    }

    /// The recipe with its labelled and target-free training sets as its validation sets, for
    /// `srsnet eval --training-sets`: how well weights fit what they were trained on. A net that
    /// does no better there than on held-out sets underfits, and more of the same data or
    /// sharper selection will not help it (models/README.md, "How well the shipped v30 fits its
    /// own training sets"). Unlabelled sets are left out: there is nothing to score them against.
    pub fn training_as_validation(&self) -> Result<Self> {
        let scored: Vec<DatasetSpec> = self
            .train
            .iter()
            .filter(|d| !matches!(d, DatasetSpec::Unlabeled { .. }))
            .cloned()
            .collect();
        if scored.is_empty() {
            bail!("the recipe has no labelled or target-free training set to score");
        }
        Ok(Recipe {
            train: self.train.clone(),
            validation: scored,
        })
    }

    /// The recipe as JSON (for the run folder and the weights' metadata).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl DatasetSpec {
    /// Parses `KIND:PATH[@WEIGHT]` (`sirst`, `sequence`, `negatives`, `unlabeled`), as
    /// `--dataset` and `--val` take it.
    pub fn parse_flag(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected KIND:PATH[@WEIGHT]"))?;
        let (path, weight) = match rest.rsplit_once('@') {
            Some((p, w)) => match w.parse::<f64>() {
                Ok(w) if w.is_finite() && w >= 0.0 => (p, w),
                _ => return Err(format!("`{s}`: weight `{w}` is not a non-negative number")),
            },
            None => (rest, 1.0),
        };
        if path.is_empty() {
            return Err(format!("`{s}`: no path"));
        }
        let p = PathBuf::from(path);
        match kind {
            "sirst" => Ok(Self::Sirst {
                root: p,
                split: None,
                weight,
                scale: Scale::Resize,
            }),
            "sequence" => Ok(Self::Sequence { dir: p, weight }),
            "negatives" => Ok(Self::Negatives {
                dir: p,
                list: None,
                exclude: None,
                weight,
            }),
            "unlabeled" => Ok(Self::Unlabeled { dir: p }),
            other => Err(format!(
                "`{s}`: unknown kind `{other}`: expected sirst, sequence, negatives or unlabeled"
            )),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Sirst { root, .. } => root,
            Self::Pairs { images, .. } => images,
            Self::Sequence { dir, .. } | Self::Negatives { dir, .. } | Self::Unlabeled { dir } => dir,
        }
    }

    /// Its weight (1 for unlabelled data, which has none).
    pub fn weight(&self) -> f64 {
        match self {
            Self::Sirst { weight, .. }
            | Self::Pairs { weight, .. }
            | Self::Sequence { weight, .. }
            | Self::Negatives { weight, .. } => *weight,
            Self::Unlabeled { .. } => 1.0,
        }
    }

    fn rebase(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match self {
            Self::Sirst { root, .. } => join(root),
            Self::Pairs {
                images, masks, split, ..
            } => {
                join(images);
                join(masks);
                if let Some(s) = split {
                    join(s);
                }
            }
            Self::Negatives { dir, list, exclude, .. } => {
                join(dir);
                list.iter_mut().chain(exclude.iter_mut()).for_each(join);
            }
            Self::Sequence { dir, .. } | Self::Unlabeled { dir } => join(dir),
        }
    }

    fn check(&self) -> Result<()> {
        let w = self.weight();
        if !w.is_finite() || w < 0.0 {
            bail!("{}: weight {w} is not a non-negative number", self.path().display());
        }
        if !self.path().is_dir() {
            bail!("dataset {} does not exist (or is not a folder)", self.path().display());
        }
        Ok(())
    }

    /// A short name for logs and reports.
    pub fn name(&self) -> String {
        let kind = match self {
            Self::Sirst { .. } => "sirst",
            Self::Pairs { .. } => "pairs",
            Self::Sequence { .. } => "sequence",
            Self::Negatives { .. } => "negatives",
            Self::Unlabeled { .. } => "unlabeled",
        };
        format!("{kind} {}", normalise(self.path()).display())
    }
}

/// `a/b/../c` → `a/c`, lexically, for names in logs and tables only (files are opened by the
/// path as written, which the OS resolves through any symlinked folder); leading `..` stay.
fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// A group of training samples drawn with one weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The dataset's name.
    pub name: String,
    /// Its samples' positions in the training list.
    pub range: std::ops::Range<usize>,
    /// Sampling weight.
    pub weight: f64,
}

/// One validation input.
#[derive(Debug, Clone)]
pub struct ValItem {
    /// The file it came from.
    pub name: String,
    /// At native resolution.
    pub image: Frame,
    /// What it is scored against.
    pub truth: Truth,
}

/// A validation set: one row of the validation table.
#[derive(Debug, Clone)]
pub struct ValSet {
    /// The dataset's name.
    pub name: String,
    /// Its inputs.
    pub items: Vec<ValItem>,
    /// True for a sequence: the items are consecutive frames in order, so temporal filters
    /// (`eval --motion-gate`) apply; an unreadable frame is skipped and leaves a gap.
    pub ordered: bool,
}

impl ValSet {
    /// The images as a model whose motion input is `motion` sees them: a sequence's frames
    /// with their motion planes (registered in order); `None` when the items' own images are
    /// what it sees (a single-frame model, or a set of still images).
    pub fn with_motion_planes(&self, motion: Option<MotionInput>) -> Option<Vec<Frame>> {
        let motion = motion.filter(|_| self.ordered)?;
        Some(crate::temporal::attach_in_order(
            self.items.iter().map(|i| &i.image),
            motion,
        ))
    }
}

/// Everything a run loads.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Segmentation samples, at the training size, grouped by dataset.
    pub seg: Vec<Sample>,
    /// The groups of `seg`.
    pub groups: Vec<Group>,
    /// Images that only the reconstruction stage uses, at the training size.
    pub recon_only: Vec<Sample>,
    /// Validation sets at native resolution.
    pub val: Vec<ValSet>,
    /// What could not be used, and why.
    pub skipped: Vec<Skipped>,
}

/// Loads a recipe's data with `channels` image planes; training samples at `size`×`size`. For
/// a motion model (`motion`), a sequence's frames carry their motion planes (the other sets'
/// crops get theirs in training: `train::motion`).
pub fn load(
    recipe: &Recipe,
    channels: usize,
    size: usize,
    rule: &LabelRule,
    motion: Option<MotionInput>,
) -> Result<Loaded> {
    recipe.check()?;
    let mut out = Loaded::default();
    for spec in &recipe.train {
        let (samples, skipped) = training_samples(spec, (channels, motion), size, rule)?;
        out.skipped.extend(skipped);
        if matches!(spec, DatasetSpec::Unlabeled { .. }) {
            out.recon_only.extend(samples);
            continue;
        }
        if samples.is_empty() {
            bail!("{}: no usable sample", spec.name());
        }
        let start = out.seg.len();
        out.seg.extend(samples);
        out.groups.push(Group {
            name: spec.name(),
            range: start..out.seg.len(),
            weight: spec.weight(),
        });
    }
    for spec in &recipe.validation {
        let (set, skipped) = validation_set(spec, channels)?;
        out.skipped.extend(skipped);
        out.val.push(set);
    }
    Ok(out)
}

fn training_samples(
    spec: &DatasetSpec,
    (channels, motion): (usize, Option<MotionInput>),
    size: usize,
    rule: &LabelRule,
) -> Result<(Vec<Sample>, Vec<Skipped>)> {
    let resized = |v: Vec<Sample>| v.iter().map(|s| resize_sample(s, size)).collect::<Vec<_>>();
    let tiled = |v: Vec<Sample>| v.iter().flat_map(|s| tiles(s, size)).collect::<Vec<_>>();
    Ok(match spec {
        DatasetSpec::Sirst { scale, .. } | DatasetSpec::Pairs { scale, .. } => {
            let (layout, split) = pair_layout(spec);
            let (s, k) = load_pairs(&layout, &layout.names(split.as_deref())?, channels);
            match scale {
                Scale::Resize => (resized(s), k),
                Scale::Native => (tiled(s), k),
            }
        }
        DatasetSpec::Sequence { dir, .. } => {
            let (mut frames, skipped) = sequence_frames(dir, channels, rule)?;
            if let Some(m) = motion {
                with_motion_planes(&mut frames, m);
            }
            (tiled(frames), skipped)
        }
        DatasetSpec::Negatives { dir, list, exclude, .. } => {
            let (frames, skipped) = negative_frames(dir, list.as_deref(), exclude.as_deref(), channels)?;
            (tiled(frames), skipped)
        }
        DatasetSpec::Unlabeled { dir } => {
            let (s, k) = load_unlabeled(dir, channels)?;
            (resized(s), k)
        }
    })
}

/// Loads only a recipe's validation sets (for `srsnet eval --recipe`).
pub fn load_validation(recipe: &Recipe, channels: usize) -> Result<(Vec<ValSet>, Vec<Skipped>)> {
    if recipe.validation.is_empty() {
        bail!("the recipe has no validation sets");
    }
    let (mut sets, mut skipped) = (Vec::new(), Vec::new());
    for spec in &recipe.validation {
        spec.check()?;
        let (set, k) = validation_set(spec, channels)?;
        sets.push(set);
        skipped.extend(k);
    }
    Ok((sets, skipped))
}

fn validation_set(spec: &DatasetSpec, channels: usize) -> Result<(ValSet, Vec<Skipped>)> {
    let (items, skipped) = match spec {
        DatasetSpec::Sirst { .. } | DatasetSpec::Pairs { .. } => {
            let (layout, split) = pair_layout(spec);
            let (s, k) = load_pairs(&layout, &layout.names(split.as_deref())?, channels);
            let items = s
                .into_iter()
                .map(|s| ValItem {
                    truth: Truth::Mask(s.mask.unwrap_or_default().iter().map(|&v| v > 0.5).collect()),
                    name: s.name,
                    image: s.image,
                })
                .collect();
            (items, k)
        }
        DatasetSpec::Sequence { dir, .. } => {
            // Scored by the centroid rule on the annotated points (no derived masks).
            let seq = Sequence::open(dir)?;
            if !seq.is_annotated() {
                bail!(
                    "{}: a validation sequence needs centroids.csv or boxes.csv",
                    dir.display()
                );
            }
            let mut items = Vec::new();
            let mut skipped = Vec::new();
            for f in seq.frames {
                match read_frame(&f.path, channels) {
                    Ok(image) => items.push(ValItem {
                        name: f.path.display().to_string(),
                        image,
                        truth: Truth::Points(f.truth.unwrap_or_default()),
                    }),
                    Err(e) => skipped.push(Skipped {
                        name: f.path.display().to_string(),
                        reason: format!("{e:#}"),
                    }),
                }
            }
            (items, skipped)
        }
        DatasetSpec::Negatives { dir, list, exclude, .. } => {
            let (frames, skipped) = negative_frames(dir, list.as_deref(), exclude.as_deref(), channels)?;
            let items = frames
                .into_iter()
                .map(|s| ValItem {
                    name: s.name,
                    image: s.image,
                    truth: Truth::Points(vec![]),
                })
                .collect();
            (items, skipped)
        }
        DatasetSpec::Unlabeled { dir } => bail!("{}: unlabeled data cannot validate", dir.display()),
    };
    if items.is_empty() {
        bail!("validation set {}: no usable input", spec.name());
    }
    Ok((
        ValSet {
            name: spec.name(),
            items,
            ordered: matches!(spec, DatasetSpec::Sequence { .. }),
        },
        skipped,
    ))
}

fn pair_layout(spec: &DatasetSpec) -> (PairLayout, Option<PathBuf>) {
    match spec {
        DatasetSpec::Sirst { root, split, .. } => (PairLayout::sirst(root), split.as_ref().map(|s| root.join(s))),
        DatasetSpec::Pairs {
            images,
            masks,
            mask_suffix,
            extension,
            split,
            ..
        } => (
            PairLayout {
                images: images.clone(),
                masks: masks.clone(),
                mask_suffix: mask_suffix.clone(),
                extension: extension.clone(),
            },
            split.clone(),
        ),
        _ => unreachable!("pair_layout is only called for pair datasets"),
    }
}

/// A sequence's frames with derived masks; a frame with a target whose mask cannot be derived
/// is skipped whole.
fn sequence_frames(dir: &Path, channels: usize, rule: &LabelRule) -> Result<(Vec<Sample>, Vec<Skipped>)> {
    let seq = Sequence::open(dir)?;
    if !seq.is_annotated() {
        bail!(
            "{}: a training sequence needs centroids.csv or boxes.csv",
            dir.display()
        );
    }
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for f in &seq.frames {
        let name = f.path.display().to_string();
        let frame = match read_frame(&f.path, channels) {
            Ok(fr) => fr,
            Err(e) => {
                skipped.push(Skipped {
                    name,
                    reason: format!("{e:#}"),
                });
                continue;
            }
        };
        // The label rule reads gray: the first plane (gray frames are replicated into RGB).
        let labels = derive_frame(frame.plane(0), frame.width, frame.height, &f.annotations(), rule);
        if let Some((k, why)) = labels.skipped.first() {
            skipped.push(Skipped {
                name,
                reason: format!("target {}: {why} (frame left out: its mask would be incomplete)", k + 1),
            });
            continue;
        }
        out.push(Sample {
            name,
            mask: Some(labels.mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect()),
            image: frame,
        });
    }
    Ok((out, skipped))
}

/// Appends each frame's motion plane, the frames registered in order. A frame the sequence
/// skipped (unreadable, or its mask not derivable) leaves a gap that the registration spans
/// as if it were one frame: a few pixels of pan more, which the search reach covers.
fn with_motion_planes(frames: &mut [Sample], motion: MotionInput) {
    let planes = crate::temporal::attach_in_order(frames.iter().map(|s| &s.image), motion);
    for (s, image) in frames.iter_mut().zip(planes) {
        s.image = image;
    }
}

/// Target-free frames of `dir`, restricted to `list` and without `exclude` (file names).
fn negative_frames(
    dir: &Path,
    list: Option<&Path>,
    exclude: Option<&Path>,
    channels: usize,
) -> Result<(Vec<Sample>, Vec<Skipped>)> {
    let keep = list.map(read_split).transpose()?;
    let drop = exclude.map(read_split).transpose()?.unwrap_or_default();
    let files = list_images(dir)?;
    if let Some(keep) = &keep {
        if let Some(missing) = keep.iter().find(|n| !files.iter().any(|f| &file_name(f) == *n)) {
            bail!("{}: `{missing}` is listed but not in the folder", dir.display());
        }
    }
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for f in files {
        let n = file_name(&f);
        if keep.as_ref().is_some_and(|k| !k.contains(&n)) || drop.contains(&n) {
            continue;
        }
        match read_frame(&f, channels) {
            Ok(image) => out.push(Sample {
                name: f.display().to_string(),
                mask: Some(vec![0.0; image.width * image.height]),
                image,
            }),
            Err(e) => skipped.push(Skipped {
                name: f.display().to_string(),
                reason: format!("{e:#}"),
            }),
        }
    }
    Ok((out, skipped))
}

/// Cuts a sample into `size`×`size` tiles at native resolution that cover it (the last row
/// and column of tiles are aligned to the far edges); a side smaller than `size` is padded by
/// repeating its edge pixels.
pub fn tiles(s: &Sample, size: usize) -> Vec<Sample> {
    let (w, h) = (s.image.width, s.image.height);
    let (pw, ph) = (w.max(size), h.max(size));
    let pad = |plane: &[f32]| {
        if (pw, ph) == (w, h) {
            plane.to_vec()
        } else {
            pad_edge(plane, w, h, pw, ph)
        }
    };
    let planes: Vec<Vec<f32>> = (0..s.image.channels).map(|c| pad(s.image.plane(c))).collect();
    let mask = s.mask.as_ref().map(|m| pad(m));
    let starts = |n: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..=n - size).step_by(size).collect();
        if v.last() != Some(&(n - size)) {
            v.push(n - size);
        }
        v
    };
    let cut = |src: &[f32], x0: usize, y0: usize| -> Vec<f32> {
        (0..size)
            .flat_map(|y| src[(y0 + y) * pw + x0..][..size].iter().copied())
            .collect()
    };
    let mut out = Vec::new();
    for &y0 in &starts(ph) {
        for &x0 in &starts(pw) {
            out.push(Sample {
                name: format!("{}@{x0},{y0}", s.name),
                image: Frame {
                    width: size,
                    height: size,
                    channels: s.image.channels,
                    data: planes.iter().flat_map(|p| cut(p, x0, y0)).collect(),
                },
                mask: mask.as_ref().map(|m| cut(m, x0, y0)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_files_parse_into_one_recipe() {
        assert_eq!(
            DatasetSpec::parse_flag("negatives:bg@0.5"),
            Ok(DatasetSpec::Negatives {
                dir: "bg".into(),
                list: None,
                exclude: None,
                weight: 0.5
            })
        );
        assert!(DatasetSpec::parse_flag("sequence:a@-1").is_err());
        assert!(DatasetSpec::parse_flag("masks:a").unwrap_err().contains("unknown kind"));
        let r: Recipe = serde_json::from_str(r#"{"train":[{"kind":"sequence","dir":"s"}]}"#).unwrap();
        assert_eq!(
            r.train,
            vec![DatasetSpec::Sequence {
                dir: "s".into(),
                weight: 1.0
            }]
        );
        assert!(serde_json::from_str::<Recipe>(r#"{"train":[{"kind":"sequence","dri":"s"}]}"#).is_err());
    }

    #[test]
    fn training_sets_become_the_validation_sets_without_the_unlabelled_ones() {
        let r: Recipe = serde_json::from_str(
            r#"{"train":[{"kind":"unlabeled","dir":"u"},{"kind":"sequence","dir":"s","weight":0.5},
                {"kind":"negatives","dir":"n","exclude":"held-out.txt"}],
               "validation":[{"kind":"sequence","dir":"v"}]}"#,
        )
        .unwrap();
        let t = r.training_as_validation().unwrap();
        assert_eq!(t.train, r.train);
        assert_eq!(t.validation, r.train[1..], "in order, the held-out list still excluded");
        let only_unlabelled: Recipe = serde_json::from_str(r#"{"train":[{"kind":"unlabeled","dir":"u"}]}"#).unwrap();
        let e = only_unlabelled.training_as_validation().unwrap_err().to_string();
        assert!(e.contains("no labelled or target-free training set"), "{e}");
    }

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(
            normalise(Path::new("models/recipes/../../../shared/x")),
            PathBuf::from("../shared/x")
        );
        assert_eq!(normalise(Path::new("./a/./b")), PathBuf::from("a/b"));
    }

    #[test]
    fn tiles_cover_the_frame_at_native_resolution() {
        let (w, h) = (10, 7);
        let s = Sample {
            name: "f".into(),
            image: Frame::new(w, h, 1, (0..w * h).map(|v| v as f32).collect()).unwrap(),
            mask: Some(vec![0.0; w * h]),
        };
        let t = tiles(&s, 4);
        assert_eq!(t.len(), 3 * 2, "x starts 0,4,6; y starts 0,3");
        assert_eq!(
            t[2].image.data[0], 6.0,
            "the last column of tiles is aligned to the edge"
        );
        assert_eq!(t[3].image.data[0], 30.0);
        let small = tiles(&s, 16);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].image.data[15], 9.0, "padded by repeating the edge");
    }

    #[test]
    fn native_scale_keeps_labelled_targets_at_their_size() {
        let root = std::env::temp_dir().join(format!("srsnet-native-{}", std::process::id()));
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::create_dir_all(root.join("masks")).unwrap();
        let (w, h) = (300u32, 200u32);
        let target = |x: u32, y: u32| (250..260).contains(&x) && (150..156).contains(&y);
        image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if target(x, y) { 220 } else { (x % 50) as u8 }])
        })
        .save(root.join("images/a.png"))
        .unwrap();
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([if target(x, y) { 255 } else { 0 }]))
            .save(root.join("masks/a_pixels0.png"))
            .unwrap();
        let spec = |scale| DatasetSpec::Sirst {
            root: root.clone(),
            split: None,
            weight: 1.0,
            scale,
        };
        let rule = LabelRule::default();
        let (native, _) = training_samples(&spec(Scale::Native), (1, None), 128, &rule).unwrap();
        let (resized, _) = training_samples(&spec(Scale::Resize), (1, None), 128, &rule).unwrap();
        let area = |s: &Sample| s.mask.as_ref().unwrap().iter().filter(|&&m| m > 0.5).count();
        assert_eq!(native.len(), 3 * 2, "x starts 0, 128, 172; y starts 0, 72");
        assert!(native.iter().all(|s| (s.image.width, s.image.height) == (128, 128)));
        assert_eq!(
            native.iter().map(area).max(),
            Some(60),
            "the 10×6 target whole, at its size"
        );
        assert_eq!(resized.len(), 1);
        let squeezed = area(&resized[0]);
        assert!(
            squeezed < 30,
            "resizing 300×200 to 128² shrinks the target: {squeezed} px"
        );
        // `resize` is the default and is not written, so older recipes and metadata read the same.
        let json = serde_json::to_string(&spec(Scale::Resize)).unwrap();
        assert!(!json.contains("scale"), "{json}");
        let json = serde_json::to_string(&spec(Scale::Native)).unwrap();
        assert!(json.contains(r#""scale":"native""#), "{json}");
        assert_eq!(serde_json::from_str::<DatasetSpec>(&json).unwrap(), spec(Scale::Native));
        let bad = r#"{"kind":"sirst","root":"r","scale":"huge"}"#;
        let err = serde_json::from_str::<DatasetSpec>(bad).unwrap_err().to_string();
        assert!(err.contains("huge") && err.contains("native"), "{err}");
        std::fs::remove_dir_all(&root).ok();
    }
}
