//! Training losses: stage 1's reconstruction MSE and stage 2's 0.5·BCE + soft-Dice loss.

use candle_core::{Result, Tensor};
use candle_nn::ops::sigmoid;

/// Mean squared error over all elements (the reference's `MSE(R(x), x)`, no ½ factor).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    pred.sub(target)?.sqr()?.mean_all()
}

/// Mean binary cross-entropy with logits in the stable form
/// `max(z, 0) − z·y + log(1 + exp(−|z|))`: finite for any logit, saturated ones included.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    logits
        .relu()?
        .sub(&logits.mul(target)?)?
        .add(&softplus_neg_abs)?
        .mean_all()
}

/// `1 − mean_b Dice_b` with `Dice_b = (2·Σ σ(z)·y + 1e-5) / (Σ σ(z) + Σ y + 1e-5)` per sample.
pub fn soft_dice_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    const SMOOTH: f64 = 1e-5;
    let p = sigmoid(logits)?.flatten_from(1)?;
    let y = target.flatten_from(1)?;
    let inter = p.mul(&y)?.sum(1)?;
    let denom = p.sum(1)?.add(&y.sum(1)?)?.affine(1.0, SMOOTH)?;
    let dice = inter.affine(2.0, SMOOTH)?.div(&denom)?;
    dice.mean_all()?.neg()?.affine(1.0, 1.0)
}

/// Stage 2's loss: `0.5·BCE-with-logits + (1 − mean per-sample soft Dice)`.
pub fn segmentation_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    bce_with_logits(logits, target)?
        .affine(0.5, 0.0)?
        .add(&soft_dice_loss(logits, target)?)
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
    fn perfect_prediction_has_near_zero_dice_loss() -> Result<()> {
        let y = Tensor::new(&[[0f32, 1.0, 1.0, 0.0]], &Device::Cpu)?;
        let z = ((&y * 40.0)? - 20.0)?;
        assert!(soft_dice_loss(&z, &y)?.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }
}
