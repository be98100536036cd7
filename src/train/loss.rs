//! Training losses: stage 1's reconstruction MSE and stage 2's 0.5·BCE + soft-Dice loss,
//! with the costs beyond the reference's that [`LossConfig`] switches on.

use candle_core::{DType, Result, Tensor};
use candle_nn::ops::sigmoid;

use crate::detect::label_components;

/// Mean squared error over all elements (the reference's `MSE(R(x), x)`, no ½ factor).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    pred.sub(target)?.sqr()?.mean_all()
}

/// `softplus(z) = log(1 + exp(z))` in the stable form `max(z, 0) + log(1 + exp(−|z|))`:
/// finite for any logit, saturated ones included. It is the BCE of a pixel whose label is 0.
fn softplus(z: &Tensor) -> Result<Tensor> {
    z.relu()?.add(&z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)
}

/// Mean binary cross-entropy with logits, `softplus(z) − z·y` ([`softplus`]'s stable form).
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    softplus(logits)?.sub(&logits.mul(target)?)?.mean_all()
}

/// `1 − mean_b Dice_b` with `Dice_b = (2·Σ σ(z)·y + s_b) / (Σ σ(z) + Σ y + s_b)` per sample.
///
/// `s_b` is the reference's 1e-5 for a sample with a target. A target-free sample (a hard
/// negative, which the reference never trains on) gets `s_b = 64` instead, so its loss is
/// `Σp / (64 + Σp)`. With 1e-5 it would be a constant 1 with no gradient once `Σp` exceeds
/// 1e-5, and the only signal against a false target would be BCE's, diluted over every pixel
/// of the batch (about 800× weaker per pixel than Dice's on a crop with a target). Why 64: on
/// a crop with a target of mass Y, Dice charges a false pixel about 1/(2Y); `s_b = 64` charges
/// it 1/64 at most, as on a crop with a typical target (Y ≈ 32 px). A small `s_b` is unstable:
/// with `s_b = 1` the pull towards zero mass grows as the mass shrinks, and a fine-tuning run
/// predicted nothing at all after two epochs (models/README.md, run `lite-v2-ft`).
pub fn soft_dice_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    soft_dice_per_sample(logits, target)?
        .mean_all()?
        .neg()?
        .affine(1.0, 1.0)
}

/// Each sample's `Dice_b` of [`soft_dice_loss`], shape (B,).
fn soft_dice_per_sample(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    const SMOOTH: f64 = 1e-5;
    const SMOOTH_TARGET_FREE: f64 = 64.0;
    let p = sigmoid(logits)?.flatten_from(1)?;
    let y = target.flatten_from(1)?;
    let y_sum = y.sum(1)?;
    let target_free = y_sum.eq(0.0)?.to_dtype(p.dtype())?;
    let smooth = target_free.affine(SMOOTH_TARGET_FREE - SMOOTH, SMOOTH)?;
    let inter = p.mul(&y)?.sum(1)?;
    let denom = p.sum(1)?.add(&y_sum)?.add(&smooth)?;
    inter.affine(2.0, 0.0)?.add(&smooth)?.div(&denom)
}

/// What a target-free sample (a hard negative) costs in stage 2's loss, besides its share of
/// the batch's BCE. Samples with a target always get the reference's soft Dice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NegativeLoss {
    /// Its predicted mass, `Σp / (64 + Σp)` (soft Dice with smoothing 64, [`soft_dice_loss`]).
    #[default]
    Mass,
    /// Its summed BCE over 64, `Σ softplus(z) / 64` ([`negative_logit_loss`]).
    Logits,
}

/// `Σ_i softplus(z_i) / 64` per target-free sample, averaged over the batch as the Dice term
/// is (a sample with a target contributes its soft Dice loss instead); [`region_loss`] with
/// [`NegativeLoss::Logits`] and weight 1.
///
/// Why: [`soft_dice_loss`] charges a false pixel through σ(z), whose slope vanishes as the
/// net grows sure: a false blob at p = 0.999 (z ≈ 7) gets 1e-3 of the gradient it got at
/// p = 0.5, and the batch BCE, averaged over all 8·128² pixels, adds only 0.5/131072 per
/// pixel. The confident blobs on roof edges and tree crowns that make most false targets are
/// exactly those. This charges each pixel of a target-free sample what a false pixel costs
/// beside a 64-px target (1/64 at p = 1) without the sigmoid's saturation: its gradient in z
/// is σ(z)/64, which grows, not shrinks, with the net's confidence.
pub fn negative_logit_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    region_loss(logits, target, NegativeLoss::Logits, 1.0)
}

/// The batch mean of a per-sample region loss: `1 − Dice_b` for a sample with a target (the
/// reference's), and for a target-free sample `weight ×` the cost `negative` names.
///
/// Why a weight: at weight 1 the logit cost cut false targets on unseen target-free frames 4×
/// but made the net under-segment and drop dim targets (run `lite-v5-hn-logits` in
/// models/README.md); a weight below 1 trades some of that back without bringing back the
/// sigmoid's saturation, since the gradient stays `weight·σ(z)/64`.
pub fn region_loss(logits: &Tensor, target: &Tensor, negative: NegativeLoss, weight: f64) -> Result<Tensor> {
    let y = target.flatten_from(1)?;
    let target_free = y.sum(1)?.eq(0.0)?.to_dtype(logits.dtype())?;
    let dice_loss = soft_dice_per_sample(logits, target)?.neg()?.affine(1.0, 1.0)?;
    let free_cost = match negative {
        NegativeLoss::Mass => dice_loss.clone(),
        NegativeLoss::Logits => softplus(&logits.flatten_from(1)?)?.sum(1)?.affine(1.0 / 64.0, 0.0)?,
    };
    let with_target = target_free.affine(-1.0, 1.0)?;
    let per = with_target
        .mul(&dice_loss)?
        .add(&target_free.affine(weight, 0.0)?.mul(&free_cost)?)?;
    per.mean_all()
}

/// A training-mask value meaning "no label here": the pixel costs nothing and gets no
/// gradient (stuck pixels with `--stuck-label ignored`, `train::augment::StuckLabel`).
pub const IGNORED: f32 = -1.0;

/// The logits and 0/1 labels the losses see: where the mask is [`IGNORED`], the label
/// becomes 0 and the logit a constant −100. There σ(z) and softplus(z) are below 1e-43, so
/// the pixel adds nothing to any sum of BCE, Dice or the logit cost, and, as `z·0 − 100`,
/// it passes no gradient back. A mask without ignored pixels is returned as it is, so the
/// reference's loss (and its parity) is untouched.
fn without_ignored(logits: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    let lowest = target
        .min_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_scalar::<f32>()?;
    if lowest >= 0.0 {
        return Ok((logits.clone(), target.clone()));
    }
    let labelled = target.ge(0.0)?.to_dtype(logits.dtype())?;
    let z = logits.mul(&labelled)?.add(&labelled.affine(100.0, -100.0)?)?;
    Ok((z, target.relu()?))
}

/// Stage 2's loss settings beyond the reference's. The default is the reference's loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// What a target-free sample costs ([`region_loss`]).
    pub negative: NegativeLoss,
    /// That cost's weight (1: as `negative` names it).
    pub negative_weight: f64,
    /// The weight of [`per_target_loss`] (0: off).
    pub target_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            negative: NegativeLoss::Mass,
            negative_weight: 1.0,
            target_weight: 0.0,
        }
    }
}

/// Stage 2's loss: `0.5·BCE-with-logits + the region loss`, target-free samples costed by
/// `cfg.negative` times `cfg.negative_weight` ([`region_loss`]), plus `cfg.target_weight ×`
/// [`per_target_loss`]; pixels marked [`IGNORED`] cost nothing ([`without_ignored`]). With the
/// default config it is the reference's `0.5·BCE + 1 − mean soft Dice`, computed as
/// [`soft_dice_loss`] does so that training parity with the reference fixtures stays exact.
pub fn segmentation_loss(logits: &Tensor, target: &Tensor, cfg: &LossConfig) -> Result<Tensor> {
    let (logits, target) = without_ignored(logits, target)?;
    let (logits, target) = (&logits, &target);
    let bce = bce_with_logits(logits, target)?.affine(0.5, 0.0)?;
    let loss = if cfg.negative == NegativeLoss::Mass && cfg.negative_weight == 1.0 {
        bce.add(&soft_dice_loss(logits, target)?)?
    } else {
        bce.add(&region_loss(logits, target, cfg.negative, cfg.negative_weight)?)?
    };
    if cfg.target_weight == 0.0 {
        return Ok(loss);
    }
    loss.add(&per_target_loss(logits, target)?.affine(cfg.target_weight, 0.0)?)
}

/// The batch mean, over samples with a target, of `mean_k mean_{i∈k} softplus(−z_i)`: for each
/// labelled target `k` (an 8-connected component of the mask), the mean BCE of its own
/// pixels, averaged over the sample's targets; a target-free sample adds 0 but counts in the
/// batch mean, as in [`region_loss`]. It charges only missed target pixels, never false ones.
///
/// Why: soft Dice and BCE weigh a target by its pixels. Beside a 200-px SIRST target a 2-px
/// one is 1 % of a sample's Dice, and BCE's pull on an extended target's rim is diluted over
/// the whole crop, so the nets mark small targets late and extended ones only at their core
/// (models/README.md, "Diagnostic `diag-sirst-native`"), which costs both Pd (a partial
/// blob's centroid falls 3 px or more off) and nIoU. Here every target weighs the same,
/// whatever its size, and a target marked only at its core pays for the rest of its pixels.
/// The BCE form does not saturate on a missed pixel (gradient `−(1 − p)` times its weight).
pub fn per_target_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let w = per_target_weights(target)?.to_dtype(logits.dtype())?;
    softplus(&logits.neg()?)?.mul(&w)?.sum_all()
}

/// The per-pixel weights of [`per_target_loss`], shaped as `target`: `1 / (B·K_b·|k|)` on
/// the pixels of target `k` of sample `b` (which has `K_b` targets), 0 elsewhere. A sample's
/// frame is `target`'s last dimension wide (a `(B, N)` tensor is one row per sample).
fn per_target_weights(target: &Tensor) -> Result<Tensor> {
    let b = target.dim(0)?;
    let w = target.dim(target.rank() - 1)?;
    let y = target.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut weights = Vec::with_capacity(b * y.first().map_or(0, Vec::len));
    for sample in &y {
        let mask: Vec<bool> = sample.iter().map(|&v| v > 0.5).collect();
        let comps = label_components(&mask, w, mask.len() / w);
        let mut sizes = vec![0usize; comps.count + 1];
        for &l in &comps.labels {
            sizes[l as usize] += 1;
        }
        let per_target = 1.0 / (b * comps.count.max(1)) as f32;
        weights.extend(comps.labels.iter().map(|&l| {
            if l == 0 {
                0.0
            } else {
                per_target / sizes[l as usize] as f32
            }
        }));
    }
    Tensor::from_vec(weights, target.shape(), target.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The logit cost for target-free samples at `weight`, no per-target term.
    fn logits_at(weight: f64) -> LossConfig {
        LossConfig {
            negative: NegativeLoss::Logits,
            negative_weight: weight,
            target_weight: 0.0,
        }
    }

    fn softplus64(z: f64) -> f64 {
        (1.0 + z.exp()).ln()
    }

    /// A (2, 1, 6, 6) batch: sample 0 holds a 1-px target at (0, 0) and a 3×3 one at rows and
    /// columns 2–4; sample 1 is target-free. Logits `found` on the pixels named found, −5 on
    /// the other target pixels, −8 elsewhere.
    fn two_targets(small_found: bool, big_found: &[(usize, usize)]) -> Result<(Tensor, Tensor)> {
        let mut y = vec![0f32; 72];
        let mut z = vec![-8f32; 72];
        y[0] = 1.0;
        z[0] = if small_found { 6.0 } else { -5.0 };
        for r in 2..5 {
            for c in 2..5 {
                y[r * 6 + c] = 1.0;
                z[r * 6 + c] = if big_found.contains(&(r, c)) { 6.0 } else { -5.0 };
            }
        }
        let t = |v: Vec<f32>| Tensor::from_vec(v, (2, 1, 6, 6), &Device::Cpu);
        Ok((t(z)?, t(y)?))
    }

    #[test]
    fn every_target_costs_alike_whatever_its_size() -> Result<()> {
        let all: Vec<(usize, usize)> = (2..5).flat_map(|r| (2..5).map(move |c| (r, c))).collect();
        // Missing the 1-px target costs what missing the 9-px one costs (per-pixel BCE would
        // charge the big one 9×): ½·½·(softplus(5) + softplus(−6)) over two samples.
        let (z, y) = two_targets(false, &all)?;
        let small_missed = per_target_loss(&z, &y)?.to_scalar::<f32>()? as f64;
        let (z, y) = two_targets(true, &[])?;
        let big_missed = per_target_loss(&z, &y)?.to_scalar::<f32>()? as f64;
        let want = (softplus64(5.0) + softplus64(-6.0)) / 4.0;
        assert!((small_missed - want).abs() < 1e-5, "{small_missed} vs {want}");
        assert!((big_missed - want).abs() < 1e-5, "{big_missed} vs {want}");
        // A target marked only at its core pays for its 8 missing rim pixels: 8/9 of a miss.
        let (z, y) = two_targets(true, &[(3, 3)])?;
        let core = per_target_loss(&z, &y)?.to_scalar::<f32>()? as f64;
        let want = (softplus64(-6.0) + (8.0 * softplus64(5.0) + softplus64(-6.0)) / 9.0) / 4.0;
        assert!((core - want).abs() < 1e-5, "{core} vs {want}");
        Ok(())
    }

    #[test]
    fn the_per_target_loss_charges_missed_pixels_only_and_does_not_saturate() -> Result<()> {
        let (z, y) = two_targets(false, &[])?;
        let zv = candle_core::Var::from_tensor(&z)?;
        let g = per_target_loss(zv.as_tensor(), &y)?
            .backward()?
            .get(zv.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        // d/dz_i of −w_i·log σ(z_i) = −w_i·(1 − σ(z_i)): nearly −w_i for a pixel at z = −5.
        let sigma = |z: f64| 1.0 / (1.0 + (-z).exp());
        // w = 1/(B·K·|k|): 1/(2·2·1) for the 1-px target, 1/(2·2·9) for the 3×3 one.
        let small = -(1.0 - sigma(-5.0)) / 4.0;
        let rim = -(1.0 - sigma(-5.0)) / 36.0;
        assert!((g[0] as f64 - small).abs() < 1e-6, "{}", g[0]);
        assert!((g[2 * 6 + 2] as f64 - rim).abs() < 1e-6, "{}", g[14]);
        // Background pixels, false ones included, and the target-free sample get nothing.
        let labels = y.flatten_all()?.to_vec1::<f32>()?;
        assert!(g.iter().zip(&labels).all(|(&v, &l)| (v != 0.0) == (l > 0.5)), "{g:?}");
        // Everything found: next to nothing, in the other losses' units.
        let all: Vec<(usize, usize)> = (2..5).flat_map(|r| (2..5).map(move |c| (r, c))).collect();
        let (z, y) = two_targets(true, &all)?;
        assert!(per_target_loss(&z, &y)?.to_scalar::<f32>()? < 0.003);
        Ok(())
    }

    #[test]
    fn the_target_weight_adds_the_per_target_loss_and_ignored_pixels_are_no_targets() -> Result<()> {
        let (z, y) = two_targets(true, &[(3, 3)])?;
        // An ignored pixel next to the big target neither joins it nor forms a target.
        let mut yv = y.flatten_all()?.to_vec1::<f32>()?;
        yv[2 * 6 + 5] = IGNORED;
        let y = Tensor::from_vec(yv, (2, 1, 6, 6), &Device::Cpu)?;
        let base = logits_at(0.25);
        let with = LossConfig {
            target_weight: 0.5,
            ..base
        };
        let a = segmentation_loss(&z, &y, &base)?.to_scalar::<f32>()? as f64;
        let b = segmentation_loss(&z, &y, &with)?.to_scalar::<f32>()? as f64;
        let (z0, y0) = two_targets(true, &[(3, 3)])?;
        let per = per_target_loss(&z0, &y0)?.to_scalar::<f32>()? as f64;
        assert!((b - a - 0.5 * per).abs() < 1e-6, "{b} − {a} vs ½·{per}");
        Ok(())
    }

    #[test]
    fn bce_is_finite_on_saturated_logits() -> Result<()> {
        let z = Tensor::new(&[1e4f32, -1e4, 0.0, 80.0], &Device::Cpu)?;
        let y = Tensor::new(&[0f32, 1.0, 1.0, 1.0], &Device::Cpu)?;
        let l = bce_with_logits(&z, &y)?.to_scalar::<f32>()?;
        assert!(l.is_finite());
        // (1e4 + 1e4 + ln 2 + ~0) / 4
        assert!((l - (2e4 + std::f32::consts::LN_2) / 4.0).abs() < 1e-2, "{l}");
        Ok(())
    }

    #[test]
    fn a_target_free_sample_is_penalised_by_its_predicted_mass() -> Result<()> {
        // Sample 0: no target, σ(z) = 0.5 on 4 pixels (Σp = 2): loss 2/66, gradient non-zero.
        // Sample 1: a target predicted exactly: loss ≈ 0 (the reference's formula).
        let z = candle_core::Var::from_tensor(&Tensor::new(
            &[[0f32, 0.0, 0.0, 0.0], [40.0, -40.0, -40.0, -40.0]],
            &Device::Cpu,
        )?)?;
        let y = Tensor::new(&[[0f32, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], &Device::Cpu)?;
        let loss = soft_dice_loss(z.as_tensor(), &y)?;
        assert!((loss.to_scalar::<f32>()? - (2.0 / 66.0) / 2.0).abs() < 1e-6);
        let g = loss.backward()?.get(z.as_tensor()).unwrap().to_vec2::<f32>()?;
        // d/dz_i of ½·Σp/(64+Σp) = ½·σ'(z_i)·64/(64+Σp)² = ½·0.25·64/66².
        for gi in &g[0] {
            assert!((gi - 8.0 / 4356.0).abs() < 1e-7, "{gi}");
        }
        Ok(())
    }

    #[test]
    fn the_logit_loss_charges_a_confident_false_pixel_without_saturating() -> Result<()> {
        // Sample 0: no target, one pixel at z = 7, three at z = −40: loss Σ softplus / 64.
        // Sample 1: a target predicted exactly: loss ≈ 0 (the reference's Dice).
        let z = candle_core::Var::from_tensor(&Tensor::new(
            &[[7f32, -40.0, -40.0, -40.0], [40.0, -40.0, -40.0, -40.0]],
            &Device::Cpu,
        )?)?;
        let y = Tensor::new(&[[0f32, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], &Device::Cpu)?;
        let loss = negative_logit_loss(z.as_tensor(), &y)?;
        let softplus7 = (1.0 + 7f64.exp()).ln();
        assert!((loss.to_scalar::<f32>()? as f64 - softplus7 / 64.0 / 2.0).abs() < 1e-6);
        let g = loss.backward()?.get(z.as_tensor()).unwrap().to_vec2::<f32>()?;
        // d/dz of ½·softplus(z)/64 = ½·σ(z)/64: about 1/128 at z = 7, where the mass loss's
        // gradient is ½·σ'(7)·64/(64 + σ(7))² ≈ 7e-6.
        let sigma7 = 1.0 / (1.0 + (-7f64).exp());
        assert!((g[0][0] as f64 - sigma7 / 128.0).abs() < 1e-7, "{}", g[0][0]);
        let mass = soft_dice_loss(z.as_tensor(), &y)?.backward()?;
        let gm = mass.get(z.as_tensor()).unwrap().to_vec2::<f32>()?;
        assert!(g[0][0] > 1000.0 * gm[0][0], "{} vs {}", g[0][0], gm[0][0]);
        // With a target the two losses agree: the reference's Dice.
        let yt = Tensor::new(&[[1f32, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], &Device::Cpu)?;
        let a = negative_logit_loss(z.as_tensor(), &yt)?.to_scalar::<f32>()?;
        let b = soft_dice_loss(z.as_tensor(), &yt)?.to_scalar::<f32>()?;
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        Ok(())
    }

    #[test]
    fn the_negative_weight_scales_only_the_target_free_samples() -> Result<()> {
        // Sample 0: no target; sample 1: a target half predicted (Dice well below 1).
        let z = Tensor::new(&[[3f32, -1.0, 0.5, -2.0], [0.0, 1.0, -3.0, -40.0]], &Device::Cpu)?;
        let y = Tensor::new(&[[0f32, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]], &Device::Cpu)?;
        let zv = z.to_vec2::<f32>()?;
        let p: Vec<f64> = zv[1].iter().map(|&v| 1.0 / (1.0 + (-v as f64).exp())).collect();
        let dice1 = (2.0 * (p[0] + p[1]) + 1e-5) / (p.iter().sum::<f64>() + 2.0 + 1e-5);
        let softplus_sum: f64 = zv[0].iter().map(|&v| (1.0 + (v as f64).exp()).ln()).sum();
        let p0: f64 = zv[0].iter().map(|&v| 1.0 / (1.0 + (-v as f64).exp())).sum();
        for w in [1.0, 0.25, 0.0] {
            let logits = region_loss(&z, &y, NegativeLoss::Logits, w)?.to_scalar::<f32>()? as f64;
            let want = (w * softplus_sum / 64.0 + (1.0 - dice1)) / 2.0;
            assert!((logits - want).abs() < 1e-6, "logits, weight {w}: {logits} vs {want}");
            let mass = region_loss(&z, &y, NegativeLoss::Mass, w)?.to_scalar::<f32>()? as f64;
            let want = (w * p0 / (64.0 + p0) + (1.0 - dice1)) / 2.0;
            assert!((mass - want).abs() < 1e-6, "mass, weight {w}: {mass} vs {want}");
        }
        // At weight 1 the mass cost is the reference's soft Dice loss.
        let a = region_loss(&z, &y, NegativeLoss::Mass, 1.0)?.to_scalar::<f32>()?;
        let b = soft_dice_loss(&z, &y)?.to_scalar::<f32>()?;
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        Ok(())
    }

    #[test]
    fn an_ignored_pixel_costs_nothing_and_gets_no_gradient() -> Result<()> {
        // Sample 0 has a target (pixel 1) and an ignored pixel (3); sample 1 is target-free
        // with an ignored pixel (0). The loss must not depend on the ignored pixels' logits,
        // and must equal the loss of the same batch with them predicted as sure background.
        let y = Tensor::new(&[[0f32, 1.0, 0.0, IGNORED], [IGNORED, 0.0, 0.0, 0.0]], &Device::Cpu)?;
        let loss_with = |a: f32, b: f32| -> Result<(f32, Vec<Vec<f32>>)> {
            let z = candle_core::Var::from_tensor(&Tensor::new(
                &[[-2f32, 3.0, -1.0, a], [b, -4.0, 0.5, -3.0]],
                &Device::Cpu,
            )?)?;
            let l = segmentation_loss(z.as_tensor(), &y, &logits_at(0.25))?;
            let g = l.backward()?.get(z.as_tensor()).unwrap().to_vec2::<f32>()?;
            Ok((l.to_scalar::<f32>()?, g))
        };
        let (l1, g1) = loss_with(9.0, 9.0)?;
        let (l2, _) = loss_with(-5.0, 0.0)?;
        assert_eq!(l1, l2, "the ignored logits changed the loss");
        assert_eq!((g1[0][3], g1[1][0]), (0.0, 0.0), "gradient reached an ignored pixel");
        assert!(g1[0][1] < 0.0 && g1[1][2] > 0.0, "labelled pixels still learn: {g1:?}");
        let sure = Tensor::new(&[[-2f32, 3.0, -1.0, -100.0], [-100.0, -4.0, 0.5, -3.0]], &Device::Cpu)?;
        let y0 = y.relu()?;
        let want = segmentation_loss(&sure, &y0, &logits_at(0.25))?.to_scalar::<f32>()?;
        assert!((l1 - want).abs() < 1e-7, "{l1} vs {want}");
        // Without ignored pixels nothing changes: the reference's loss, exactly.
        let z = Tensor::new(&[[-2f32, 3.0, -1.0, 2.0], [1.0, -4.0, 0.5, -3.0]], &Device::Cpu)?;
        let a = segmentation_loss(&z, &y0, &LossConfig::default())?.to_scalar::<f32>()?;
        let b = (bce_with_logits(&z, &y0)?.affine(0.5, 0.0)? + soft_dice_loss(&z, &y0)?)?.to_scalar::<f32>()?;
        assert_eq!(a, b);
        Ok(())
    }

    #[test]
    fn perfect_prediction_has_near_zero_dice_loss() -> Result<()> {
        let y = Tensor::new(&[[0f32, 1.0, 1.0, 0.0]], &Device::Cpu)?;
        let z = ((&y * 40.0)? - 20.0)?;
        assert!(soft_dice_loss(&z, &y)?.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }
}
