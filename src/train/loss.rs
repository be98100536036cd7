//! Training losses: stage 1's reconstruction MSE and stage 2's 0.5·BCE + soft-Dice loss.

use candle_core::{Result, Tensor};
use candle_nn::ops::sigmoid;

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

/// Stage 2's loss: `0.5·BCE-with-logits + the region loss`, target-free samples costed by
/// `negative` times `negative_weight` ([`region_loss`]); pixels marked [`IGNORED`] cost
/// nothing ([`without_ignored`]). With the default (mass, weight 1) it is the reference's
/// `0.5·BCE + 1 − mean soft Dice`, computed as [`soft_dice_loss`] does so that training
/// parity with the reference fixtures stays exact.
pub fn segmentation_loss(
    logits: &Tensor,
    target: &Tensor,
    negative: NegativeLoss,
    negative_weight: f64,
) -> Result<Tensor> {
    let (logits, target) = without_ignored(logits, target)?;
    let (logits, target) = (&logits, &target);
    let bce = bce_with_logits(logits, target)?.affine(0.5, 0.0)?;
    if negative == NegativeLoss::Mass && negative_weight == 1.0 {
        return bce.add(&soft_dice_loss(logits, target)?);
    }
    bce.add(&region_loss(logits, target, negative, negative_weight)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
            let l = segmentation_loss(z.as_tensor(), &y, NegativeLoss::Logits, 0.25)?;
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
        let want = segmentation_loss(&sure, &y0, NegativeLoss::Logits, 0.25)?.to_scalar::<f32>()?;
        assert!((l1 - want).abs() < 1e-7, "{l1} vs {want}");
        // Without ignored pixels nothing changes: the reference's loss, exactly.
        let z = Tensor::new(&[[-2f32, 3.0, -1.0, 2.0], [1.0, -4.0, 0.5, -3.0]], &Device::Cpu)?;
        let a = segmentation_loss(&z, &y0, NegativeLoss::Mass, 1.0)?.to_scalar::<f32>()?;
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
