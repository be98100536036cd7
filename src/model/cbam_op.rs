//! The full-resolution half of a Res-CBAM block's attention on the CPU in f32, as two autograd
//! ops: the spatial attention's channel pooling of the channel-gated map, and the closing
//! `relu(t · ca · sa + residual)`.
//!
//! Why: written with tensor ops, the tail of every block makes five full-size tensors in the
//! forward (`t·ca`, `·sa`, `+ residual`, `relu`, and the channel mean/max inputs) and its
//! backward about four times as many (each broadcast product's gradient is a product and a
//! reduction, the max's gradient an equality mask, the ReLU's a mask and a product). Memory
//! traffic of such element-wise passes, not arithmetic, was most of a lite training step after
//! the convolutions. Here the forward reads `t` twice (pool, then the closing pass) and never
//! materialises the gated map; the backward is one pass per op.
//!
//! What differs from the composition, on purpose: where several channels tie for the channel
//! maximum, the gradient goes to the first of them only, as PyTorch's `torch.max(x, dim=1)`
//! (the reference's spatial attention) does; Candle's max gives each tied element the whole
//! gradient. Other devices and dtypes (f16 inference, CUDA) use the composition.

use super::cpu_storage::{dot, f32_slice, is_cpu_f32, par_collect_chunks, par_zeroed, with_cpu_f32};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether the fused ops handle these tensors (all on the CPU in f32).
pub fn applies(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| is_cpu_f32(t))
}

/// `[mean_c(t·ca), max_c(t·ca)]`: (B, C, H, W) and (B, C, 1, 1) → (B, 2, H, W), the input of
/// CBAM's spatial-attention convolution.
pub fn channel_pool(t: &Tensor, ca: &Tensor) -> Result<Tensor> {
    let (b, c, _, _) = t.dims4()?;
    let ca = ca.reshape((b, c))?.contiguous()?;
    t.contiguous()?.apply_op2(&ca, ChannelPool)
}

/// `relu(t · ca · sa + residual)` with t and residual (B, C, H, W), ca (B, C, 1, 1) and
/// sa (B, 1, H, W).
pub fn scale_add_relu(t: &Tensor, ca: &Tensor, sa: &Tensor, residual: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = t.dims4()?;
    if residual.dims4()? != (b, c, h, w) {
        candle_core::bail!(
            "residual {:?} does not match the block's output {:?}",
            residual.dims(),
            t.dims()
        );
    }
    // One gate tensor per frame, [ca (C) | sa (H·W)], because a custom op takes three inputs.
    let gates = Tensor::cat(&[ca.reshape((b, c))?, sa.reshape((b, h * w))?], 1)?;
    t.contiguous()?.apply_op3(&gates, &residual.contiguous()?, ScaleAddRelu)
}

/// Reads a tensor's contiguous CPU f32 data inside a backward pass.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    with_cpu_f32(t, "fused attention tensor", f)
}

/// The first channel holding the maximum of `t·ca` at each pixel of frame `t_b` (C planes of
/// `hw`), with the per-pixel maxima in `max`.
fn channel_argmax(t_b: &[f32], ca_b: &[f32], hw: usize, max: &mut [f32], arg: &mut [u32]) {
    max.copy_from_slice(&t_b[..hw]);
    max.iter_mut().for_each(|m| *m *= ca_b[0]);
    arg.fill(0);
    for (ci, (plane, &a)) in t_b.chunks_exact(hw).zip(ca_b).enumerate().skip(1) {
        // Selects rather than a branch, so that the loop vectorises (same result: a later
        // channel wins only when strictly greater).
        for ((m, i), &v) in max.iter_mut().zip(arg.iter_mut()).zip(plane) {
            let v = v * a;
            let greater = v > *m;
            *m = if greater { v } else { *m };
            *i = if greater { ci as u32 } else { *i };
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ChannelPool;

impl CustomOp2 for ChannelPool {
    fn name(&self) -> &'static str {
        "cbam-channel-pool"
    }

    fn cpu_fwd(&self, ts: &CpuStorage, tl: &Layout, cs: &CpuStorage, cl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = tl.shape().dims4()?;
        let (t, ca) = (
            f32_slice(ts, tl, "attention input")?,
            f32_slice(cs, cl, "channel gate")?,
        );
        let hw = h * w;
        let mut out = par_zeroed(b * 2 * hw);
        out.par_chunks_mut(2 * hw).enumerate().for_each(|(bi, o)| {
            let (t_b, ca_b) = (&t[bi * c * hw..(bi + 1) * c * hw], &ca[bi * c..(bi + 1) * c]);
            let (mean, max) = o.split_at_mut(hw);
            let mut arg = vec![0u32; hw];
            channel_argmax(t_b, ca_b, hw, max, &mut arg);
            for (plane, &a) in t_b.chunks_exact(hw).zip(ca_b) {
                mean.iter_mut().zip(plane).for_each(|(m, &v)| *m += v * a);
            }
            mean.iter_mut().for_each(|m| *m /= c as f32);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, 2, h, w))))
    }

    fn bwd(&self, t: &Tensor, ca: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = t.dims4()?;
        let hw = h * w;
        let mut gt = par_zeroed(b * c * hw);
        let mut gca = vec![0f32; b * c];
        with_data(t, |t| {
            with_data(ca, |ca| {
                with_data(g, |g| {
                    gt.par_chunks_mut(c * hw)
                        .zip(gca.par_chunks_mut(c))
                        .enumerate()
                        .for_each(|(bi, (gt_b, gca_b))| {
                            let (t_b, ca_b) = (&t[bi * c * hw..(bi + 1) * c * hw], &ca[bi * c..(bi + 1) * c]);
                            let (g_mean, g_max) = g[bi * 2 * hw..(bi + 1) * 2 * hw].split_at(hw);
                            let (mut max, mut arg) = (vec![0f32; hw], vec![0u32; hw]);
                            channel_argmax(t_b, ca_b, hw, &mut max, &mut arg);
                            let inv_c = 1.0 / c as f32;
                            let mut d = vec![0f32; hw];
                            for ci in 0..c {
                                let plane = &t_b[ci * hw..(ci + 1) * hw];
                                // ∂L/∂(t·ca) at this channel: the mean's share, plus the max's where
                                // this channel is the argmax.
                                for (((d, &gm), &gx), &i) in d.iter_mut().zip(g_mean).zip(g_max).zip(&arg) {
                                    *d = gm * inv_c + if i == ci as u32 { gx } else { 0.0 };
                                }
                                let out = &mut gt_b[ci * hw..(ci + 1) * hw];
                                out.iter_mut().zip(&d).for_each(|(o, &v)| *o = v * ca_b[ci]);
                                gca_b[ci] = dot(&d, plane);
                            }
                        });
                    Ok(())
                })
            })
        })?;
        let gt = Tensor::from_vec(gt, (b, c, h, w), &Device::Cpu)?;
        let gca = Tensor::from_vec(gca, (b, c), &Device::Cpu)?;
        Ok((Some(gt), Some(gca)))
    }
}

#[derive(Debug, Clone, Copy)]
struct ScaleAddRelu;

impl CustomOp3 for ScaleAddRelu {
    fn name(&self) -> &'static str {
        "cbam-scale-add-relu"
    }

    fn cpu_fwd(
        &self,
        ts: &CpuStorage,
        tl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = tl.shape().dims4()?;
        let hw = h * w;
        let t = f32_slice(ts, tl, "attention input")?;
        let gates = f32_slice(gs, gl, "attention gates")?;
        let r = f32_slice(rs, rl, "residual")?;
        let out = par_collect_chunks(b * c * hw, hw, |plane| {
            let (bi, ci) = (plane / c, plane % c);
            let gate = &gates[bi * (c + hw)..(bi + 1) * (c + hw)];
            let (a, sa) = (gate[ci], &gate[c..]);
            let (t_p, r_p) = (&t[plane * hw..(plane + 1) * hw], &r[plane * hw..(plane + 1) * hw]);
            t_p.iter()
                .zip(sa)
                .zip(r_p)
                .map(move |((&v, &s), &res)| (v * a * s + res).max(0.0))
        });
        Ok((CpuStorage::F32(out), tl.shape().clone()))
    }

    fn bwd(
        &self,
        t: &Tensor,
        gates: &Tensor,
        _residual: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = t.dims4()?;
        let hw = h * w;
        let (mut gt, mut gr) = (par_zeroed(b * c * hw), par_zeroed(b * c * hw));
        let mut gg = vec![0f32; b * (c + hw)];
        with_data(t, |t| {
            with_data(gates, |gates| {
                with_data(y, |y| {
                    with_data(g, |g| {
                        let frames = gt.par_chunks_mut(c * hw).zip(gr.par_chunks_mut(c * hw));
                        frames
                            .zip(gg.par_chunks_mut(c + hw))
                            .enumerate()
                            .for_each(|(bi, ((gt_b, gr_b), gg_b))| {
                                let at = bi * c * hw..(bi + 1) * c * hw;
                                let (t_b, y_b, g_b) = (&t[at.clone()], &y[at.clone()], &g[at]);
                                let gate = &gates[bi * (c + hw)..(bi + 1) * (c + hw)];
                                let (ca, sa) = gate.split_at(c);
                                let (gca, gsa) = gg_b.split_at_mut(c);
                                gsa.fill(0.0);
                                let mut gzt = vec![0f32; hw];
                                for ci in 0..c {
                                    let at = ci * hw..(ci + 1) * hw;
                                    let (t_p, y_p, g_p) = (&t_b[at.clone()], &y_b[at.clone()], &g_b[at.clone()]);
                                    let (gt_p, gr_p) = (&mut gt_b[at.clone()], &mut gr_b[at]);
                                    let a = ca[ci];
                                    // Zipped slices, not indices: without bounds checks the loop vectorises.
                                    let outs = gr_p.iter_mut().zip(gt_p.iter_mut()).zip(gzt.iter_mut());
                                    let ins = y_p.iter().zip(g_p).zip(t_p).zip(sa.iter());
                                    for (((gr, gt), gzt), (((&y, &g), &t), &s)) in outs.zip(ins) {
                                        // The ReLU passes the gradient where its output is positive.
                                        let gz = if y > 0.0 { g } else { 0.0 };
                                        *gr = gz;
                                        *gt = gz * a * s;
                                        *gzt = gz * t;
                                    }
                                    gca[ci] = dot(&gzt, sa);
                                    gsa.iter_mut().zip(&gzt).for_each(|(o, &v)| *o += v * a);
                                }
                            });
                        Ok(())
                    })
                })
            })
        })?;
        let shape = (b, c, h, w);
        Ok((
            Some(Tensor::from_vec(gt, shape, &Device::Cpu)?),
            Some(Tensor::from_vec(gg, (b, c + hw), &Device::Cpu)?),
            Some(Tensor::from_vec(gr, shape, &Device::Cpu)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{max_abs, max_abs_diff};
    use candle_core::{Var, D};
    use candle_nn::ops::sigmoid;

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        max_abs_diff(a, b).unwrap() / max_abs(b).unwrap().max(1e-6)
    }

    /// The composition the ops replace, as `block.rs` and `attention.rs` write it.
    fn composed(t: &Tensor, ca: &Tensor, sa_conv: &Tensor, r: &Tensor) -> Result<(Tensor, Tensor)> {
        let g = t.broadcast_mul(ca)?;
        let pooled = Tensor::cat(&[g.mean_keepdim(1)?, g.max_keepdim(1)?], 1)?;
        let sa = sigmoid(&pooled.conv2d(sa_conv, 3, 1, 1, 1)?)?;
        Ok((pooled, (g.broadcast_mul(&sa)? + r)?.relu()?))
    }

    fn fused(t: &Tensor, ca: &Tensor, sa_conv: &Tensor, r: &Tensor) -> Result<(Tensor, Tensor)> {
        let pooled = channel_pool(t, ca)?;
        let sa = sigmoid(&pooled.conv2d(sa_conv, 3, 1, 1, 1)?)?;
        Ok((pooled.clone(), scale_add_relu(t, ca, &sa, r)?))
    }

    /// Values and all four gradients (block output, channel gate, residual and, through the
    /// spatial gate, the 7×7 kernel) equal the composition's, on non-square maps and widths
    /// that are and are not multiples of 8.
    #[test]
    fn equal_the_composition_in_value_and_gradients() -> Result<()> {
        let d = Device::Cpu;
        for (b, c, h, w) in [(2, 8, 12, 9), (1, 3, 5, 7), (3, 16, 8, 8)] {
            let t = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &d)?)?;
            let ca = Var::from_tensor(&sigmoid(&Tensor::randn(0f32, 1.0, (b, c, 1, 1), &d)?)?)?;
            let r = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &d)?)?;
            let k = Var::from_tensor(&Tensor::randn(0f32, 0.2, (1, 2, 7, 7), &d)?)?;
            let (p_want, want) = composed(&t, &ca, &k, &r)?;
            let (p_got, got) = fused(&t, &ca, &k, &r)?;
            assert!(max_rel(&p_got, &p_want) < 1e-6, "pooled maps differ");
            assert!(max_rel(&got, &want) < 1e-6, "outputs differ");
            let weights = Tensor::randn(0f32, 1.0, want.shape(), &d)?;
            let gw = (want * &weights)?.sum_all()?.backward()?;
            let gg = (got * &weights)?.sum_all()?.backward()?;
            for (name, v) in [("t", &t), ("ca", &ca), ("residual", &r), ("7x7 kernel", &k)] {
                let e = max_rel(gg.get(v).expect("grad"), gw.get(v).expect("grad"));
                assert!(e < 1e-5, "{b}x{c}x{h}x{w}: relative gradient error of {name}: {e}");
            }
        }
        Ok(())
    }

    /// Where channels tie for the maximum, the max's gradient goes to the first of them.
    #[test]
    fn a_tied_channel_maximum_sends_its_gradient_to_the_first_channel() -> Result<()> {
        let d = Device::Cpu;
        let t = Var::from_tensor(&Tensor::new(&[2f32, 2.0, 1.0], &d)?.reshape((1, 3, 1, 1))?)?;
        let ca = Tensor::ones((1, 3, 1, 1), candle_core::DType::F32, &d)?;
        let pooled = channel_pool(&t, &ca)?;
        assert_eq!(pooled.flatten_all()?.to_vec1::<f32>()?, [5.0 / 3.0, 2.0]);
        let g = pooled.narrow(1, 1, 1)?.sum_all()?.backward()?; // only the max
        assert_eq!(
            g.get(&t).expect("grad").flatten_all()?.to_vec1::<f32>()?,
            [1.0, 0.0, 0.0]
        );
        Ok(())
    }

    #[test]
    fn a_residual_of_another_shape_is_an_error() -> Result<()> {
        let d = Device::Cpu;
        let t = Tensor::zeros((1, 4, 3, 3), candle_core::DType::F32, &d)?;
        let (ca, sa) = (t.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?, t.narrow(1, 0, 1)?);
        let err = scale_add_relu(&t, &ca, &sa, &t.narrow(1, 0, 2)?)
            .unwrap_err()
            .to_string();
        assert!(err.contains("residual") && err.contains("[1, 2, 3, 3]"), "{err}");
        Ok(())
    }
}
