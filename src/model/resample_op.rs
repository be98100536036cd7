//! Resolution changes on the CPU in f32 as autograd ops: align-corners bilinear up-sampling by
//! an integer factor (each output reads its 2×2 source taps; the backward scatters each
//! gradient back to them) and 2×2 max pooling (the backward sends each gradient to its
//! window's maximum).
//!
//! Why: written with tensor ops (`layers::upsample` elsewhere), the resize is two dense matrix
//! products with interpolation matrices that are zero but for two entries a row, so a ×2
//! resize of a 128-wide map does 128 multiply-adds per output instead of 4, and it needs two
//! transposed copies of the map in the forward and more in the backward. The decoder of S
//! up-samples five times per frame at up to full resolution, in every training step. With this
//! op the lite seg step (`srsnet bench --train seg --batch 8 --warmup 1 --iters 3`, 256², 2
//! threads) went from 1.51–1.53 to 1.78–1.89 images/s and its peak memory from 2.9 to 2.47 GB
//! (alternating runs), and the share of GEMM in its profile halved.
//!
//! Order of operations: along W first, then along H, as the matrix form does, so the values
//! agree with it to rounding (the products here use the same f32 weights).
//!
//! Max pooling as tensor ops is two reductions over a reshaped view, and each reduction's
//! backward is a broadcast comparison and a product: six full-size passes where one does. Where
//! several elements of a window tie for its maximum, the gradient goes to the first of them in
//! row-major order, as PyTorch's `max_pool2d` (the reference) does; the reduction form gives each
//! tied element the whole gradient.

use super::cpu_storage::{cpu_f32_slice, f32_slice, par_zeroed, with_cpu_f32};
use crate::engine::kernels::resample::align_corners_taps;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x` (B, C, H, W), contiguous CPU f32, up-sampled to (B, C, H·factor, W·factor).
pub fn upsample(x: &Tensor, factor: usize) -> Result<Tensor> {
    if factor == 0 {
        candle_core::bail!("up-sampling factor 0");
    }
    x.contiguous()?.apply_op1(Upsample { factor })
}

/// One axis's taps: for each output index, its two source indices and their weights.
fn taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32, f32)> {
    align_corners_taps(n_in, n_out)
        .map(|(lo, hi, frac)| (lo, hi, 1.0 - frac, frac))
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Upsample {
    factor: usize,
}

impl Upsample {
    fn out_dims(&self, h: usize, w: usize) -> (usize, usize) {
        (h * self.factor, w * self.factor)
    }
}

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "upsample-bilinear-align-corners"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "up-sampling input")?;
        let (ho, wo) = self.out_dims(h, w);
        let (tx, ty) = (taps(w, wo), taps(h, ho));
        let mut out = par_zeroed(b * c * ho * wo);
        out.par_chunks_mut(ho * wo).enumerate().for_each(|(p, o)| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            // Along W: every source row to `wo` columns.
            let mut rows = vec![0f32; h * wo];
            for (src, dst) in plane.chunks_exact(w).zip(rows.chunks_exact_mut(wo)) {
                for (d, &(lo, hi, a, f)) in dst.iter_mut().zip(&tx) {
                    *d = a * src[lo] + f * src[hi];
                }
            }
            // Along H: each output row from its two source rows.
            for (dst, &(lo, hi, a, f)) in o.chunks_exact_mut(wo).zip(&ty) {
                let (r0, r1) = (&rows[lo * wo..(lo + 1) * wo], &rows[hi * wo..(hi + 1) * wo]);
                for ((d, &v0), &v1) in dst.iter_mut().zip(r0).zip(r1) {
                    *d = a * v0 + f * v1;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    /// The adjoint: each output gradient goes back to the taps it was read from, with their
    /// weights (H first, then W, the forward's order reversed).
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = x.dims4()?;
        let (ho, wo) = self.out_dims(h, w);
        let (tx, ty) = (taps(w, wo), taps(h, ho));
        let mut gx = par_zeroed(b * c * h * w);
        with_cpu_f32(g, "up-sampling gradient", |g| {
            gx.par_chunks_mut(h * w).enumerate().for_each(|(p, gp)| {
                let gout = &g[p * ho * wo..(p + 1) * ho * wo];
                let mut rows = vec![0f32; h * wo];
                for (src, &(lo, hi, a, f)) in gout.chunks_exact(wo).zip(&ty) {
                    for (d, &v) in rows[lo * wo..(lo + 1) * wo].iter_mut().zip(src) {
                        *d += a * v;
                    }
                    for (d, &v) in rows[hi * wo..(hi + 1) * wo].iter_mut().zip(src) {
                        *d += f * v;
                    }
                }
                for (src, dst) in rows.chunks_exact(wo).zip(gp.chunks_exact_mut(w)) {
                    for (&v, &(lo, hi, a, f)) in src.iter().zip(&tx) {
                        dst[lo] += a * v;
                        dst[hi] += f * v;
                    }
                }
            });
            Ok(())
        })?;
        Ok(Some(Tensor::from_vec(gx, (b, c, h, w), &Device::Cpu)?))
    }
}

/// 2×2 max pooling, stride 2, of `x` (B, C, H, W) with H and W even, contiguous CPU f32.
pub fn max_pool(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        candle_core::bail!("2×2 max pooling needs an even height and width, got {h}×{w}");
    }
    x.contiguous()?.apply_op1(MaxPool)
}

/// The maximum of each 2×2 window of a `w`-wide plane's row pair (`r0`, `r1`), and which of
/// its four elements (0–3, row-major) holds it first; NaN wins, as in PyTorch.
fn window_max(r0: &[f32], r1: &[f32], j: usize) -> (f32, usize) {
    let v = [r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]];
    let mut best = (v[0], 0);
    for (k, &x) in v.iter().enumerate().skip(1) {
        if x > best.0 || (x.is_nan() && !best.0.is_nan()) {
            best = (x, k);
        }
    }
    best
}

#[derive(Debug, Clone, Copy)]
struct MaxPool;

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "pooling input")?;
        let (ho, wo) = (h / 2, w / 2);
        let mut out = par_zeroed(b * c * ho * wo);
        out.par_chunks_mut(ho * wo).enumerate().for_each(|(p, o)| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for (i, dst) in o.chunks_exact_mut(wo).enumerate() {
                let (r0, r1) = (&plane[2 * i * w..][..w], &plane[(2 * i + 1) * w..][..w]);
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = window_max(r0, r1, j).0;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    /// Each window's gradient to its (first) maximum, found again from `x` rather than kept
    /// from the forward, to hold no index map per pooled activation between the passes.
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = x.dims4()?;
        let (ho, wo) = (h / 2, w / 2);
        let (x, g) = (x.contiguous()?, g.contiguous()?);
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let x = cpu_f32_slice(&xs, xl, "pooling input")?;
        let g = cpu_f32_slice(&gs, gl, "pooling gradient")?;
        let mut gx = par_zeroed(b * c * h * w);
        gx.par_chunks_mut(h * w).enumerate().for_each(|(p, gp)| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            let gout = &g[p * ho * wo..(p + 1) * ho * wo];
            for (i, grow) in gout.chunks_exact(wo).enumerate() {
                let (r0, r1) = (&plane[2 * i * w..][..w], &plane[(2 * i + 1) * w..][..w]);
                for (j, &v) in grow.iter().enumerate() {
                    let k = window_max(r0, r1, j).1;
                    gp[(2 * i + k / 2) * w + 2 * j + k % 2] = v;
                }
            }
        });
        Ok(Some(Tensor::from_vec(gx, (b, c, h, w), &Device::Cpu)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::max_abs_diff;
    use candle_core::Var;

    /// The matrix form `A_h · X · A_wᵀ` in f64 with tensor ops, and its autograd gradient.
    fn matrix_form(x: &Tensor, factor: usize) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let m = |n_in: usize, n_out: usize| -> Result<Tensor> {
            let mut v = vec![0f64; n_out * n_in];
            for (i, (lo, hi, f)) in align_corners_taps(n_in, n_out).enumerate() {
                v[i * n_in + lo] += 1.0 - f as f64;
                v[i * n_in + hi] += f as f64;
            }
            Tensor::from_vec(v, (n_out, n_in), &Device::Cpu)
        };
        let (ah, aw) = (m(h, h * factor)?, m(w, w * factor)?);
        let y = x.reshape((b * c * h, w))?.matmul(&aw.t()?)?; // (b·c·h, wo)
        let y = y.reshape((b * c, h, w * factor))?.transpose(1, 2)?.contiguous()?;
        let y = y.reshape((b * c * w * factor, h))?.matmul(&ah.t()?)?;
        y.reshape((b * c, w * factor, h * factor))?
            .transpose(1, 2)?
            .reshape((b, c, h * factor, w * factor))
    }

    #[test]
    fn matches_the_matrix_form_in_value_and_gradient() -> Result<()> {
        for (factor, (h, w)) in [(2, (5, 7)), (4, (3, 6)), (2, (1, 4)), (2, (8, 8))] {
            let x = Tensor::randn(0f32, 1., (2, 3, h, w), &Device::Cpu)?;
            // Weights of the output so the gradient is not uniform.
            let wts = Tensor::randn(0f32, 1., (2, 3, h * factor, w * factor), &Device::Cpu)?;
            let v = Var::from_tensor(&x)?;
            let ours = upsample(v.as_tensor(), factor)?;
            let g = ours.mul(&wts)?.sum_all()?.backward()?;
            let g = g.get(v.as_tensor()).expect("gradient").clone();

            let v64 = Var::from_tensor(&x.to_dtype(candle_core::DType::F64)?)?;
            let theirs = matrix_form(v64.as_tensor(), factor)?;
            let w64 = wts.to_dtype(candle_core::DType::F64)?;
            let g64 = theirs.mul(&w64)?.sum_all()?.backward()?;
            let g64 = g64
                .get(v64.as_tensor())
                .expect("gradient")
                .to_dtype(candle_core::DType::F32)?;
            // f32 against f64: a value is 4 products of |x| ≲ 4, so 1e-5 is a few ulps; a
            // gradient sums up to 4·factor² terms.
            let dv = max_abs_diff(&ours, &theirs.to_dtype(candle_core::DType::F32)?)?;
            let dg = max_abs_diff(&g, &g64)?;
            assert!(dv < 1e-5, "factor {factor}, {h}×{w}: value diff {dv}");
            assert!(dg < 1e-4, "factor {factor}, {h}×{w}: gradient diff {dg}");
        }
        Ok(())
    }

    #[test]
    fn max_pool_matches_the_reduction_form_and_sends_a_tie_to_its_first_element() -> Result<()> {
        let x = Tensor::randn(0f32, 1., (2, 3, 6, 8), &Device::Cpu)?;
        let wts = Tensor::randn(0f32, 1., (2, 3, 3, 4), &Device::Cpu)?;
        let v = Var::from_tensor(&x)?;
        let ours = max_pool(v.as_tensor())?;
        let g = ours.mul(&wts)?.sum_all()?.backward()?;
        let g = g.get(v.as_tensor()).expect("gradient").clone();
        let v2 = Var::from_tensor(&x)?;
        let theirs = v2.as_tensor().reshape((2, 3, 3, 2, 4, 2))?.max(5)?.max(3)?;
        let g2 = theirs.mul(&wts)?.sum_all()?.backward()?;
        let g2 = g2.get(v2.as_tensor()).expect("gradient").clone();
        // Random normal values do not tie, so both forms agree exactly.
        assert_eq!(max_abs_diff(&ours, &theirs)?, 0.0);
        assert_eq!(max_abs_diff(&g, &g2)?, 0.0);

        // A 2×4 plane: the first window ties at 1 in its elements 1 and 2, the second at 0
        // (all four, as after a ReLU). The gradient goes to (0, 1) and (0, 2) only.
        let x = Tensor::new(&[[0f32, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0]], &Device::Cpu)?.reshape((1, 1, 2, 4))?;
        let v = Var::from_tensor(&x)?;
        let y = max_pool(v.as_tensor())?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [1.0, 0.0]);
        let g = y.sum_all()?.backward()?;
        let g = g
            .get(v.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(g, [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn max_pool_propagates_nan_and_refuses_odd_sizes() -> Result<()> {
        let x = Tensor::new(&[[1f32, f32::NAN], [3.0, 2.0]], &Device::Cpu)?.reshape((1, 1, 2, 2))?;
        assert!(max_pool(&x)?.flatten_all()?.to_vec1::<f32>()?[0].is_nan());
        let odd = Tensor::zeros((1, 1, 3, 4), candle_core::DType::F32, &Device::Cpu)?;
        let e = max_pool(&odd).unwrap_err().to_string();
        assert!(e.contains("even height and width, got 3×4"), "{e}");
        Ok(())
    }

    #[test]
    fn corners_are_kept_and_a_zero_factor_is_an_error() -> Result<()> {
        let x = Tensor::arange(0f32, 4., &Device::Cpu)?.reshape((1, 1, 2, 2))?;
        let y = upsample(&x, 2)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!((y[0], y[3], y[12], y[15]), (0.0, 1.0, 2.0, 3.0));
        // Align corners: the second of four columns is a third of the way from 0 to 1.
        assert!((y[1] - 1.0 / 3.0).abs() < 1e-7, "{}", y[1]);
        assert!(upsample(&x, 0).is_err());
        Ok(())
    }
}
