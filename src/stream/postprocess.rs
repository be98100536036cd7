//! Postprocessing of a frame's targets: optional area limits and temporal confirmation (a
//! target must have been seen in M of the last N frames within R pixels). Scoring against
//! ground truth is `eval::metrics`' job, shared with `srsnet eval`.

use crate::detect::Target;
use crate::limits::MAX_CONFIRM_WINDOW;
use anyhow::{bail, Result};
use std::collections::VecDeque;

/// Keep only targets with an area in `[min, max]` pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AreaLimits {
    min: Option<usize>,
    max: Option<usize>,
}

impl AreaLimits {
    /// Limits with `min ≤ max` when both are given.
    pub fn new(min: Option<usize>, max: Option<usize>) -> Result<Self> {
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                bail!("--min-area {lo} is above --max-area {hi}: no target could pass");
            }
        }
        Ok(Self { min, max })
    }

    /// True when `t` passes.
    pub fn keep(&self, t: &Target) -> bool {
        self.min.is_none_or(|m| t.area >= m) && self.max.is_none_or(|m| t.area <= m)
    }
}

/// M-of-N temporal confirmation within a radius.
#[derive(Debug, Clone)]
pub struct Confirmer {
    m: usize,
    n: usize,
    radius: f64,
    history: VecDeque<Vec<(f64, f64)>>,
}

impl Confirmer {
    /// `1 ≤ m ≤ n ≤` [`MAX_CONFIRM_WINDOW`], `radius` finite and non-negative.
    pub fn new(m: usize, n: usize, radius: f64) -> Result<Self> {
        if m == 0 || n == 0 || m > n {
            bail!("temporal confirmation needs 1 ≤ M ≤ N, got {m} of {n}");
        }
        if n > MAX_CONFIRM_WINDOW {
            bail!("temporal confirmation window N = {n} exceeds the limit of {MAX_CONFIRM_WINDOW} frames");
        }
        if !radius.is_finite() || radius < 0.0 {
            bail!("confirmation radius must be a non-negative number of pixels, got {radius}");
        }
        Ok(Self {
            m,
            n,
            radius,
            history: VecDeque::with_capacity(n),
        })
    }

    /// Keeps the targets seen (within the radius) in at least M of the last N frames,
    /// this one included. All detections enter the history, confirmed or not.
    pub fn confirm(&mut self, targets: Vec<Target>) -> Vec<Target> {
        let here: Vec<(f64, f64)> = targets.iter().map(|t| (t.x, t.y)).collect();
        let r2 = self.radius * self.radius;
        let kept = targets
            .into_iter()
            .filter(|t| {
                let past = self.history.iter().rev().take(self.n - 1);
                let seen = past
                    .filter(|frame| frame.iter().any(|&(x, y)| (x - t.x).powi(2) + (y - t.y).powi(2) <= r2))
                    .count();
                seen + 1 >= self.m
            })
            .collect();
        self.history.push_back(here);
        while self.history.len() > self.n {
            self.history.pop_front();
        }
        kept
    }
}

/// Parses `M/N` for `--confirm` (a clap value parser).
pub fn parse_confirm_window(s: &str) -> Result<(usize, usize), String> {
    let (m, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected M/N, e.g. 3/5"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}`: `{v}` is not a whole number"))
    };
    let (m, n) = (num(m)?, num(n)?);
    if m == 0 || m > n {
        return Err(format!("`{s}`: needs 1 ≤ M ≤ N"));
    }
    if n > MAX_CONFIRM_WINDOW {
        return Err(format!("`{s}`: N exceeds the limit of {MAX_CONFIRM_WINDOW} frames"));
    }
    Ok((m, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(x: f64, y: f64) -> Target {
        Target {
            id: 1,
            x,
            y,
            area: 2,
            bbox: [0, 0, 0, 0],
            peak: 0.9,
            pixel_centroid: (x, y),
        }
    }

    #[test]
    fn single_frame_flash_is_not_confirmed() {
        let mut c = Confirmer::new(2, 3, 2.0).unwrap();
        assert!(c.confirm(vec![t(10.0, 10.0)]).is_empty());
        assert_eq!(c.confirm(vec![t(11.0, 10.0)]).len(), 1, "seen twice within 2 px");
        assert!(c.confirm(vec![t(50.0, 50.0)]).is_empty(), "a new flash elsewhere");
    }

    #[test]
    fn bad_windows_and_limits_are_refused() {
        assert!(Confirmer::new(1, 1_000_000_000_000, 3.0)
            .unwrap_err()
            .to_string()
            .contains("1000"));
        assert!(Confirmer::new(1, 3, -1.0).is_err());
        assert!(Confirmer::new(1, 3, f64::NAN).is_err());
        assert!(parse_confirm_window("1/1000000000000").unwrap_err().contains("limit"));
        assert!(parse_confirm_window("4/3").is_err());
        assert!(parse_confirm_window("x").is_err());
        assert_eq!(parse_confirm_window("2/3"), Ok((2, 3)));
        assert!(AreaLimits::new(Some(10), Some(5)).is_err());
        assert!(!AreaLimits::new(Some(5), Some(5)).unwrap().keep(&t(0.0, 0.0)));
    }
}
