//! Postprocessing of a frame's targets: optional area limits and temporal confirmation
//! (a target must have been seen in M of the last N frames within R pixels), plus the
//! running Pd/Fa against ground truth where the source provides it.

use crate::detect::Target;
use crate::eval::metrics::MATCH_DISTANCE;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, Default)]
pub struct AreaLimits {
    pub min: Option<usize>,
    pub max: Option<usize>,
}

impl AreaLimits {
    pub fn keep(&self, t: &Target) -> bool {
        self.min.is_none_or(|m| t.area >= m) && self.max.is_none_or(|m| t.area <= m)
    }
}

/// M-of-N temporal confirmation within a radius.
#[derive(Debug, Clone)]
pub struct Confirmer {
    pub m: usize,
    pub n: usize,
    pub radius: f64,
    history: VecDeque<Vec<(f64, f64)>>,
}

impl Confirmer {
    pub fn new(m: usize, n: usize, radius: f64) -> anyhow::Result<Self> {
        if m == 0 || n == 0 || m > n {
            anyhow::bail!("temporal confirmation needs 1 ≤ M ≤ N, got {m} of {n}");
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

/// Running Pd and Fa for point ground truth (centroid rule, 3 px).
#[derive(Debug, Clone, Default)]
pub struct PointScore {
    pub targets: u64,
    pub hits: u64,
    pub false_pixels: u64,
    pub pixels: u64,
    pub frames: u64,
}

impl PointScore {
    pub fn add(&mut self, targets: &[Target], truth: &[(f64, f64)], w: usize, h: usize) {
        let mut matched = vec![false; targets.len()];
        for &(x, y) in truth {
            let hit = (0..targets.len()).find(|&k| {
                !matched[k] && ((targets[k].x - x).powi(2) + (targets[k].y - y).powi(2)).sqrt() < MATCH_DISTANCE
            });
            if let Some(k) = hit {
                matched[k] = true;
                self.hits += 1;
            }
        }
        self.targets += truth.len() as u64;
        self.false_pixels += targets
            .iter()
            .zip(&matched)
            .filter(|(_, &m)| !m)
            .map(|(t, _)| t.area as u64)
            .sum::<u64>();
        self.pixels += (w * h) as u64;
        self.frames += 1;
    }

    pub fn pd(&self) -> f64 {
        if self.targets == 0 {
            0.0
        } else {
            self.hits as f64 / self.targets as f64
        }
    }

    pub fn fa(&self) -> f64 {
        if self.pixels == 0 {
            0.0
        } else {
            self.false_pixels as f64 / self.pixels as f64
        }
    }
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
    fn point_score_counts_hits_and_false_pixels() {
        let mut s = PointScore::default();
        s.add(&[t(10.0, 10.0), t(40.0, 40.0)], &[(11.0, 11.0)], 100, 100);
        assert_eq!((s.hits, s.targets, s.false_pixels), (1, 1, 2));
        assert!((s.fa() - 2e-4).abs() < 1e-12);
    }
}
