//! Fitting the second stage (`crate::verify`) for a weights file: its targets on a recipe's
//! training sets, labelled by the field's 3-px centroid rule, then the logistic model and a
//! threshold set by cross-validation. Validation sets are never read here.

use crate::detect::Target;
use crate::eval::metrics::{matched_blobs, truth_points};
use crate::infer::{Detector, TargetRule};
use crate::train::recipe::ValSet;
use crate::verify::{self, Row, Verifier};
use anyhow::{bail, Result};

/// How the verifier is fitted.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// The rule whose targets it judges (recorded as the weights' operating point).
    pub rule: TargetRule,
    /// Share of the true targets the threshold keeps in cross-validation.
    pub keep: f64,
    /// Cross-validation folds.
    pub folds: usize,
    /// The model: the logistic part's penalty and features, and the trees.
    pub model: verify::ModelSpec,
}

/// A training set for the verifier and how much each of its rows counts.
#[derive(Debug, Clone, Copy)]
pub struct WeighedSet<'a> {
    /// The frames.
    pub set: &'a ValSet,
    /// Each row's weight (1: as every other set's).
    pub weight: f64,
}

/// What the net's targets were on one training set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetCount {
    /// The set's name.
    pub name: String,
    /// Frames.
    pub frames: usize,
    /// True targets.
    pub targets: usize,
    /// True targets the rule found.
    pub hits: usize,
    /// Targets of the rule that matched no true target.
    pub false_targets: usize,
    /// Hits and false targets the verifier keeps, each scored by the model fitted without its
    /// fold (cross-validated: what to expect on frames like these that it did not see).
    pub kept: (usize, usize),
}

/// The fitted verifier, its rows and the per-set counts.
#[derive(Debug)]
pub struct Fitted {
    /// The model with its cross-validated threshold.
    pub verifier: Verifier,
    /// The rows it was fitted on.
    pub rows: Vec<Row>,
    /// Per training set.
    pub sets: Vec<SetCount>,
}

/// Runs `det` (its own verifier off) on every frame of `sets` and fits the verifier.
pub fn fit(det: &Detector, sets: &[WeighedSet], opts: FitOptions) -> Result<Fitted> {
    if det.verifier.is_some() {
        bail!("the detector applies a verifier already: fit on the net's own targets (load it with verify off)");
    }
    let (mut rows, mut fold_of, mut set_of, mut sets_out) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The net over every training frame is most of a fit's minutes.
    let frames = sets.iter().map(|s| s.set.items.len() as u64).sum();
    let mut progress = crate::progress::Progress::new("verifier: the net's targets", frames);
    for (k, &WeighedSet { set, weight }) in sets.iter().enumerate() {
        let mut count = SetCount {
            name: set.name.clone(),
            frames: set.items.len(),
            targets: 0,
            hits: 0,
            false_targets: 0,
            kept: (0, 0),
        };
        // A motion model sees a sequence's frames with their motion planes, still images without.
        let with_motion = set.with_motion_planes(det.motion());
        for (i, item) in set.items.iter().enumerate() {
            let image = with_motion.as_ref().map_or(&item.image, |frames| &frames[i]);
            let d = det.detect(image, opts.rule)?;
            let truth = truth_points(&item.truth, item.image.width, item.image.height);
            let found: Vec<_> = d.targets.iter().map(Target::blob).collect();
            let matched = matched_blobs(&found, &truth);
            count.targets += truth.len();
            count.hits += matched.iter().filter(|&&m| m).count();
            count.false_targets += matched.iter().filter(|&&m| !m).count();
            let features = verify::frame_features(&d.targets, &item.image, &d.prob);
            for (features, &hit) in features.into_iter().zip(&matched) {
                rows.push(Row { features, hit, weight });
                // Contiguous blocks of frames per fold: a sequence's neighbouring frames are
                // near-copies and must not score each other.
                fold_of.push(i * opts.folds / set.items.len());
                set_of.push(k);
            }
            progress.inc();
        }
        sets_out.push(count);
    }
    progress.finish();
    let hits = rows.iter().filter(|r| r.hit).count();
    if hits < opts.folds || rows.len() - hits < opts.folds {
        bail!(
            "the training sets gave {hits} true and {} false targets at {}: too few to fit a verifier \
             (at least {} of each)",
            rows.len() - hits,
            opts.rule,
            opts.folds
        );
    }
    let mut verifier = verify::fit(&rows, &opts.model);
    let scores = verify::cross_validated_scores(&rows, &fold_of, opts.folds, &opts.model);
    verifier.threshold = verify::threshold_keeping(&rows, &scores, opts.keep);
    for ((r, &s), &k) in rows.iter().zip(&scores).zip(&set_of) {
        if s >= verifier.threshold {
            let kept = &mut sets_out[k].kept;
            if r.hit {
                kept.0 += 1;
            } else {
                kept.1 += 1;
            }
        }
    }
    Ok(Fitted {
        verifier,
        rows,
        sets: sets_out,
    })
}
