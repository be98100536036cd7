//! The dataset layouts the field uses, read in one place by training, evaluation and the
//! streaming sources:
//! - [`pairs`]: labelled image/mask pairs (the SIRST layout `images/NAME.png` +
//!   `masks/NAME_pixels0.png` with split files, or any images + masks folders);
//! - [`sequence`]: centroid-annotated sequences (the DAUB layout `frames/` + `centroids.csv`),
//!   which `srsnet synth` also writes;
//! - [`folder`]: plain folders of images (target-free frames, unlabeled data, replays);
//! - [`labels`]: masks derived from point or box annotations.

pub mod folder;
pub mod labels;
pub mod pairs;
pub mod sequence;

/// What a frame is scored against.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// A ground-truth mask (SIRST-style pairs), `w`×`h`.
    Mask(Vec<bool>),
    /// Target centres (x = column, y = row); empty for a target-free frame.
    Points(Vec<(f64, f64)>),
}
