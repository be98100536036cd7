//! An exponential moving average of a run's weights (`srsnet train --ema DECAY`).
//!
//! Why: in the fine-tuning runs of models/README.md (v15–v19) the validation swings by a
//! factor of two in false targets from one epoch to the next while the training loss moves by
//! a few per cent, and run `lite-v18-precise-bn` showed that the swings are in the weights,
//! not in the BatchNorm statistics. An average of the weights over the last few hundred steps
//! (Polyak averaging; timm's `ModelEmaV2`) smooths that noise without changing what the
//! optimiser does: SGD keeps stepping the raw weights, and validation, the best and per-epoch
//! checkpoints, and so the weights file, use the average.
//!
//! After every optimiser step: `average = decay·average + (1 − decay)·weights`, for every
//! variable, BatchNorm running statistics included (their average tracks training's as the
//! weights' does). The average starts at the run's first values: for a fine-tune, the
//! shipped weights themselves. It is written into the run's last checkpoint (`ema.NAME`), so
//! `--resume` continues it exactly.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::BTreeMap;

use crate::model::weights::WeightStore;

/// The prefix of the average's tensors in a checkpoint.
pub const PREFIX: &str = "ema.";

/// The running average of a stage's variables.
pub struct Ema {
    decay: f64,
    average: BTreeMap<String, Tensor>,
}

/// The raw values an [`Ema::swap_in`] replaced, to put back with [`Swapped::restore`].
#[must_use = "the raw weights stay replaced by the average until restored"]
pub struct Swapped {
    raw: BTreeMap<String, Tensor>,
}

impl Ema {
    /// A fresh average, equal to `vars` as they stand (copies, not views).
    pub fn new(decay: f64, vars: &BTreeMap<String, Var>) -> Result<Self> {
        check_decay(decay)?;
        let average = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self { decay, average })
    }

    /// The average a checkpoint holds for each of `vars` (`ema.NAME`); an error names the
    /// checkpoint and the first variable it lacks or holds with another shape.
    pub fn from_store(decay: f64, store: &WeightStore, vars: &BTreeMap<String, Var>, device: &Device) -> Result<Self> {
        check_decay(decay)?;
        let mut average = BTreeMap::new();
        for (n, v) in vars {
            let key = format!("{PREFIX}{n}");
            if !store.contains(&key) {
                bail!(
                    "{}: holds no averaged weight {key} (written without --ema, or by another model)",
                    store.path().display()
                );
            }
            let t = store.get_any_shape(&key, DType::F32, device)?;
            if t.dims() != v.dims() {
                bail!(
                    "{}: {key} has shape {:?}, the model's variable has {:?}",
                    store.path().display(),
                    t.dims(),
                    v.dims()
                );
            }
            average.insert(n.clone(), t.to_dtype(v.dtype())?);
        }
        Ok(Self { decay, average })
    }

    /// One step of the average towards `vars`' current values.
    pub fn update(&mut self, vars: &BTreeMap<String, Var>) -> Result<()> {
        let d = self.decay;
        for (n, v) in vars {
            let a = self
                .average
                .get_mut(n)
                .with_context(|| format!("the average has no {n}"))?;
            *a = (a.affine(d, 0.0)? + v.as_tensor().detach().affine(1.0 - d, 0.0)?)?;
        }
        Ok(())
    }

    /// Replaces `vars`' values by the average; the returned raw values go back with
    /// [`Swapped::restore`].
    pub fn swap_in(&self, vars: &BTreeMap<String, Var>) -> Result<Swapped> {
        let mut raw = BTreeMap::new();
        for (n, v) in vars {
            let a = self.average.get(n).with_context(|| format!("the average has no {n}"))?;
            raw.insert(n.clone(), v.as_tensor().copy()?);
            v.set(a)?;
        }
        Ok(Swapped { raw })
    }

    /// Takes `vars`' current values of the variables `which` selects into the average as they
    /// are (used for BatchNorm statistics re-estimated under the averaged weights).
    pub fn take(&mut self, vars: &BTreeMap<String, Var>, which: impl Fn(&str) -> bool) -> Result<()> {
        for (n, v) in vars.iter().filter(|(n, _)| which(n)) {
            self.average.insert(n.clone(), v.as_tensor().copy()?);
        }
        Ok(())
    }

    /// The average's tensors by checkpoint name (`ema.NAME`).
    pub fn tensors(&self) -> impl Iterator<Item = (String, &Tensor)> {
        self.average.iter().map(|(n, t)| (format!("{PREFIX}{n}"), t))
    }
}

impl Swapped {
    /// Puts the raw values back into `vars`.
    pub fn restore(self, vars: &BTreeMap<String, Var>) -> Result<()> {
        for (n, v) in vars {
            if let Some(t) = self.raw.get(n) {
                v.set(t)?;
            }
        }
        Ok(())
    }
}

fn check_decay(decay: f64) -> Result<()> {
    if !(decay > 0.0 && decay < 1.0) {
        bail!("--ema {decay}: the decay must be strictly between 0 and 1 (e.g. 0.998)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(values: &[(&str, Vec<f32>)]) -> BTreeMap<String, Var> {
        values
            .iter()
            .map(|(n, v)| (n.to_string(), Var::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap()))
            .collect()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_vec1().unwrap()
    }

    #[test]
    fn the_average_follows_the_recurrence_step_by_step() {
        let v = vars(&[("a", vec![1.0, -2.0]), ("b", vec![4.0])]);
        let mut ema = Ema::new(0.9, &v).unwrap();
        // Weights 1 → 3 → 5 after two steps: 0.9·(0.9·1 + 0.1·3) + 0.1·5 = 1.58.
        v["a"]
            .set(&Tensor::new(&[3.0f32, -2.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(&v).unwrap();
        v["a"].set(&Tensor::new(&[5.0f32, 0.0], &Device::Cpu).unwrap()).unwrap();
        ema.update(&v).unwrap();
        let a = values(&ema.average["a"]);
        assert!((a[0] - 1.58).abs() < 1e-6, "{a:?}");
        assert!((a[1] - (0.9 * -2.0 + 0.1 * 0.0)).abs() < 1e-6, "{a:?}");
        assert_eq!(values(&ema.average["b"]), vec![4.0]);
    }

    #[test]
    fn swapping_in_and_restoring_leaves_the_raw_weights_untouched() {
        let v = vars(&[("a", vec![1.0, 2.0])]);
        let mut ema = Ema::new(0.5, &v).unwrap();
        v["a"].set(&Tensor::new(&[3.0f32, 6.0], &Device::Cpu).unwrap()).unwrap();
        ema.update(&v).unwrap();
        let swapped = ema.swap_in(&v).unwrap();
        assert_eq!(values(v["a"].as_tensor()), vec![2.0, 4.0]);
        swapped.restore(&v).unwrap();
        assert_eq!(values(v["a"].as_tensor()), vec![3.0, 6.0]);
        // The average is a copy: restoring the raw weights did not move it.
        assert_eq!(values(&ema.average["a"]), vec![2.0, 4.0]);
    }

    #[test]
    fn a_decay_outside_the_open_unit_interval_is_refused() {
        let v = vars(&[("a", vec![1.0])]);
        for d in [0.0, 1.0, 1.5, -0.1, f64::NAN] {
            let e = Ema::new(d, &v).err().expect("refused").to_string();
            assert!(e.contains("strictly between 0 and 1"), "{e}");
        }
    }
}
