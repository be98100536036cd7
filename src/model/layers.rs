//! The primitive layers: convolution, BatchNorm (optionally folded into the convolution),
//! align-corners bilinear up-sampling and 2×2 max pooling.

use super::batchnorm_train::{BatchNormTrain, BN_EPS};
use super::conv;
use super::cpu_storage::is_cpu_f32;
use super::weights::{BnMode, Init, Weights, WeightsError};
use crate::engine::kernels::resample::align_corners_taps;
use candle_core::{DType, Result, Tensor, Var, D};

/// A 2-D convolution with stride 1 (the only stride the reference uses).
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// Kernel, (cout, cin, k, k).
    pub weight: Tensor,
    /// Bias, (cout).
    pub bias: Option<Tensor>,
    /// Zero padding on each side.
    pub padding: usize,
    /// Kernel dilation.
    pub dilation: usize,
}

/// Shape and options of a convolution to load.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Whether the convolution has a bias.
    pub bias: bool,
    /// Kernel dilation.
    pub dilation: usize,
}

impl ConvSpec {
    /// A "same" convolution with bias, as most of the reference's are.
    pub fn same(cin: usize, cout: usize, kernel: usize) -> Self {
        Self {
            cin,
            cout,
            kernel,
            bias: true,
            dilation: 1,
        }
    }

    /// The same convolution without a bias.
    pub fn no_bias(self) -> Self {
        Self { bias: false, ..self }
    }

    /// The same convolution with this dilation (and "same" padding).
    pub fn dilated(self, dilation: usize) -> Self {
        Self { dilation, ..self }
    }
}

impl Conv2d {
    /// Loads the convolution `spec` describes from `w`.
    pub fn load(w: &Weights, spec: ConvSpec) -> std::result::Result<Self, WeightsError> {
        let k = spec.kernel;
        let init = Init::pytorch_conv(spec.cin * k * k);
        let weight = w.get(&[spec.cout, spec.cin, k, k], "weight", init)?;
        let bias = if spec.bias {
            Some(w.get(&[spec.cout], "bias", init)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            padding: spec.dilation * (k / 2),
            dilation: spec.dilation,
        })
    }

    /// Convolves `x` (N, C, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv::conv2d(x, &self.weight, self.padding, self.dilation)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// BatchNorm2d. In eval mode it normalises with its running statistics; in training mode
/// (see [`BnMode`]) with the batch's statistics (biased variance), and it updates the running
/// statistics as PyTorch does: `r ← (1 − m)·r + m·batch`, with the *unbiased* batch variance.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Scale γ.
    pub weight: Tensor,
    /// Shift β.
    pub bias: Tensor,
    /// Running mean.
    pub running_mean: Tensor,
    /// Running variance.
    pub running_var: Tensor,
    running: Option<(Var, Var)>,
    mode: BnMode,
}

impl BatchNorm {
    /// Loads a BatchNorm of `c` channels from `w`.
    pub fn load(w: &Weights, c: usize) -> std::result::Result<Self, WeightsError> {
        let (running_mean, mean_var) = w.get_var(&[c], "running_mean", Init::Const(0.0))?;
        let (running_var, var_var) = w.get_var(&[c], "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight: w.get(&[c], "weight", Init::Const(1.0))?,
            bias: w.get(&[c], "bias", Init::Const(0.0))?,
            running_mean,
            running_var,
            running: mean_var.zip(var_var),
            mode: w.bn_mode().clone(),
        })
    }

    /// Per-channel (scale, shift) such that eval-mode BN is `x·scale + shift`.
    pub fn scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let scale = self.weight.div(&(self.running_var.affine(1.0, BN_EPS)?.sqrt()?))?;
        let shift = self.bias.sub(&self.running_mean.mul(&scale)?)?;
        Ok((scale, shift))
    }

    /// Normalises `x` with the running statistics (or the batch's, in training).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.mode.is_training() {
            return self.forward_train(x);
        }
        let (scale, shift) = self.scale_shift()?;
        x.broadcast_mul(&scale.reshape((1, (), 1, 1))?)?
            .broadcast_add(&shift.reshape((1, (), 1, 1))?)
    }

    /// Training mode on CPU f32: `relu?(BN(x + bias))` as one op that keeps only `x` for the
    /// backward pass (see `batchnorm_train.rs`); `bias` is the preceding convolution's.
    fn forward_train_fused(&self, x: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(c, x.dtype(), x.device())?;
                &zeros
            }
        };
        let gamma_beta = Tensor::stack(&[&self.weight, &self.bias], 0)?;
        let (y, stats) = BatchNormTrain::apply(x, bias, &gamma_beta, relu)?;
        if let Some((rm, rv)) = &self.running {
            // The statistics are of x; the BatchNorm's input is x + bias.
            let n = stats.count as f64;
            let mean = Tensor::from_vec(stats.mean, c, x.device())?.to_dtype(x.dtype())?;
            let mean = (mean + bias.detach())?;
            let var = Tensor::from_vec(stats.var, c, x.device())?.to_dtype(x.dtype())?;
            self.update_running(rm, rv, &mean, &var, n)?;
        }
        Ok(y)
    }

    /// PyTorch's running-statistics update, with the unbiased batch variance.
    fn update_running(&self, rm: &Var, rv: &Var, mean: &Tensor, var: &Tensor, n: f64) -> Result<()> {
        let m = self.mode.momentum();
        let unbiased = (var * (n / (n - 1.0).max(1.0)))?;
        rm.set(&((rm.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        rv.set(&((rv.as_tensor() * (1.0 - m))? + (unbiased * m)?)?)
    }

    fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let mean = x.mean_keepdim((0, 2, 3))?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
        if let Some((rm, rv)) = &self.running {
            let n = (b * h * w) as f64;
            self.update_running(rm, rv, &mean.detach().reshape(c)?, &var.detach().reshape(c)?, n)?;
        }
        let normed = centred.broadcast_div(&var.affine(1.0, BN_EPS)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)
    }
}

/// A convolution followed by a BatchNorm, stored separately or folded into one convolution.
#[derive(Debug, Clone)]
pub struct ConvBn {
    pub(crate) conv: Conv2d,
    pub(crate) bn: Option<BatchNorm>,
}

impl ConvBn {
    /// Loads `conv_w.{weight,bias}` and `bn_w.{weight,bias,running_*}`; folds when `conv_w` asks.
    /// Folding is done in f32 and the result cast to the view's dtype, so an f16 model gets
    /// folded weights rounded once rather than a fold computed in f16.
    pub fn load(conv_w: &Weights, bn_w: &Weights, spec: ConvSpec) -> std::result::Result<Self, WeightsError> {
        if !conv_w.fold_bn() {
            return Ok(Self {
                conv: Conv2d::load(conv_w, spec)?,
                bn: Some(BatchNorm::load(bn_w, spec.cout)?),
            });
        }
        let dtype = conv_w.dtype();
        let conv = Conv2d::load(&conv_w.clone().with_dtype(DType::F32), spec)?;
        let bn = BatchNorm::load(&bn_w.clone().with_dtype(DType::F32), spec.cout)?;
        let fold = || -> Result<Self> {
            let f = Self { conv, bn: Some(bn) }.folded()?;
            let weight = f.conv.weight.to_dtype(dtype)?;
            let bias = f.conv.bias.map(|b| b.to_dtype(dtype)).transpose()?;
            Ok(Self {
                conv: Conv2d { weight, bias, ..f.conv },
                bn: None,
            })
        };
        fold().map_err(|source: candle_core::Error| WeightsError::Candle {
            file: conv_w.origin(),
            name: conv_w.full_name("weight"),
            source: Box::new(source),
        })
    }

    /// `BN(conv(x)) = conv'(x)` with `W' = W·s` per output channel and `b' = b·s + t`.
    pub fn folded(&self) -> Result<Self> {
        let Some(bn) = &self.bn else {
            return Ok(self.clone());
        };
        let (scale, shift) = bn.scale_shift()?;
        let weight = self.conv.weight.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
        let bias = match &self.conv.bias {
            Some(b) => b.mul(&scale)?.add(&shift)?,
            None => shift,
        };
        Ok(Self {
            conv: Conv2d {
                weight,
                bias: Some(bias),
                ..self.conv.clone()
            },
            bn: None,
        })
    }

    /// Convolution, BatchNorm, ReLU.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_maybe_relu(x, false)
    }

    /// `relu(BN(conv(x)))`, fused into one op when training on the CPU.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_maybe_relu(x, true)
    }

    fn forward_maybe_relu(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        if let Some(bn) = self.bn.as_ref().filter(|bn| bn.mode.is_training() && is_cpu_f32(x)) {
            let conv = &self.conv;
            let y = conv::conv2d(x, &conv.weight, conv.padding, conv.dilation)?;
            return bn.forward_train_fused(&y, conv.bias.as_ref(), relu);
        }
        let y = self.conv.forward(x)?;
        let y = match &self.bn {
            Some(bn) => bn.forward(&y)?,
            None => y,
        };
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

/// 2×2 max pooling, stride 2: on the CPU in f32 the fused op of [`super::resample_op`] (a tie
/// sends the gradient to the window's first maximum, as PyTorch does), elsewhere a max over a
/// (…, 2, …, 2) reshape (a tie gives each tied element the whole gradient).
///
/// Not candle's `max_pool2d`: its backward (candle 0.11.1) multiplies the gradient by the
/// mean of the max mask (1/4 for a unique maximum) instead of dividing by the number of
/// maxima, so gradients through it come out 4× too small.
pub fn pool(x: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(x) {
        return super::resample_op::max_pool(x);
    }
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h / 2, 2, w / 2, 2))?.max(5)?.max(3)
}

/// Bilinear up-sampling by an integer factor with `align_corners=True`, differentiable
/// (unlike candle's `upsample_bilinear2d`): on the CPU in f32 the fused op of
/// [`super::resample_op`], elsewhere two matrix products `A_h · X · A_wᵀ`.
pub fn upsample(x: &Tensor, factor: usize) -> Result<Tensor> {
    if is_cpu_f32(x) {
        return super::resample_op::upsample(x, factor);
    }
    let (b, c, h, w) = x.dims4()?;
    let (ho, wo) = (h * factor, w * factor);
    let a_w = interpolation_matrix(w, wo, x)?; // (wo, w)
    let a_h = interpolation_matrix(h, ho, x)?; // (ho, h)
                                               // Along W: (b·c·h, w) · (w, wo).
    let y = x.reshape((b * c * h, w))?.matmul(&a_w.t()?)?;
    // Along H: bring H last, multiply, and put it back.
    let y = y.reshape((b * c, h, wo))?.transpose(1, 2)?.contiguous()?;
    let y = y.reshape((b * c * wo, h))?.matmul(&a_h.t()?)?;
    y.reshape((b * c, wo, ho))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, c, ho, wo))
}

/// The (n_out, n_in) align-corners linear interpolation matrix, computed in f32 and rounded
/// once to the model's dtype. In f16 on CUDA the products with it still sum in f32: Candle's
/// f16 GEMMs accumulate in f32 (`CUBLAS_COMPUTE_32F`) unless reduced precision is switched on.
fn interpolation_matrix(n_in: usize, n_out: usize, like: &Tensor) -> Result<Tensor> {
    let mut m = vec![0f32; n_out * n_in];
    for (i, (lo, hi, frac)) in align_corners_taps(n_in, n_out).enumerate() {
        m[i * n_in + lo] += 1.0 - frac;
        m[i * n_in + hi] += frac;
    }
    Tensor::from_vec(m, (n_out, n_in), like.device())?.to_dtype(like.dtype())
}

/// Mean over the spatial dims: (B, C, H, W) → (B, C). An f16 map is summed in f32 (Candle
/// sums f16 in f16, which over the 1–5 thousand pixels of a bottleneck map loses about three
/// digits) and the mean rounded to f16 once.
pub fn global_avg(x: &Tensor) -> Result<Tensor> {
    mean_f32(&x.flatten_from(2)?, D::Minus1, false)
}

/// The mean of `x` over `dim` (kept as size 1 if `keepdim`), summed in f32 when `x` is a
/// half-precision tensor and returned in `x`'s dtype.
pub fn mean_f32(x: &Tensor, dim: D, keepdim: bool) -> Result<Tensor> {
    let wide = match x.dtype() {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let m = if keepdim {
        wide.mean_keepdim(dim)?
    } else {
        wide.mean(dim)?
    };
    m.to_dtype(x.dtype())
}

/// Max over the spatial dims: (B, C, H, W) → (B, C).
pub fn global_max(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.max(D::Minus1)
}

/// A 1×1 convolution without bias applied to pooled vectors: (B, Cin) → (B, Cout).
pub fn linear_no_bias(x: &Tensor, weight_1x1: &Tensor) -> Result<Tensor> {
    let (cout, cin, _, _) = weight_1x1.dims4()?;
    x.matmul(&weight_1x1.reshape((cout, cin))?.t()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn upsample_matches_candle_align_corners() -> Result<()> {
        let x = Tensor::randn(0f32, 1., (2, 3, 5, 7), &Device::Cpu)?;
        for f in [2, 4] {
            let ours = upsample(&x, f)?;
            let theirs = x.upsample_bilinear2d(5 * f, 7 * f, true)?;
            let diff = max_abs_diff(&ours, &theirs)?;
            assert!(diff < 1e-5, "factor {f}: max diff {diff}");
        }
        Ok(())
    }

    #[test]
    fn pool_matches_candle_forward_and_has_exact_gradient() -> Result<()> {
        let x = Tensor::randn(0f64, 1., (2, 3, 8, 6), &Device::Cpu)?;
        let ours = pool(&x)?;
        assert_eq!(max_abs_diff(&ours, &x.max_pool2d(2)?)?, 0.0);
        // d(sum(pool(x)))/dx is 1 at each window's maximum and 0 elsewhere: 12·3·2 ones.
        let v = candle_core::Var::from_tensor(&x)?;
        let g = pool(v.as_tensor())?.sum_all()?.backward()?;
        let g = g
            .get(v.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1::<f64>()?;
        assert_eq!(g.iter().filter(|&&v| v == 1.0).count(), 2 * 3 * 4 * 3);
        assert_eq!(g.iter().filter(|&&v| v == 0.0).count(), g.len() - 2 * 3 * 4 * 3);
        Ok(())
    }

    #[test]
    fn upsample_keeps_corners() -> Result<()> {
        let x = Tensor::arange(0f32, 4., &Device::Cpu)?.reshape((1, 1, 2, 2))?;
        let y = upsample(&x, 2)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(y[0], 0.0);
        assert_eq!(y[3], 1.0);
        assert_eq!(y[15], 3.0);
        Ok(())
    }
}
