//! Stride-1 2-D convolution on the CPU in f32: "same" convolutions (k = 3, 5, 7, no dilation)
//! by the inference engine's direct kernel, forward and input gradient, and their kernel
//! gradient by a direct tap-sum kernel; others by im2col GEMM; 1×1 convolutions as one batched
//! matmul (both gradients GEMMs). Other devices and dtypes use Candle's conv2d unchanged.
//!
//! Why not Candle's CPU conv2d: measured on this 2-core machine, its tiled-im2col forward is
//! 1.5–4× slower than building the im2col matrix with a parallel copy loop and calling one GEMM,
//! for every layer shape of the `lite` preset at batch 1 (e.g. 8→8 channels at 256²: 10.6 ms
//! against 2.7 ms; equal at 64→64 channels, 128²). And its backward computes the input gradient
//! with a direct `conv_transpose2d` loop and the kernel gradient as a convolution whose
//! "kernel" is the whole H×W gradient map: at batch 8 it took 3–7× the forward (1.0 s at 16
//! channels, 256²; 0.67 s for the 7×7 spatial-attention conv). Here the backward is
//! - input gradient: a convolution of the output gradient with the flipped, transposed kernel
//!   (what a transposed stride-1 convolution is), by the same direct kernel or im2col GEMM;
//! - kernel gradient: `Σ_b g_b · im2col(x_b)ᵀ`, one batched GEMM, or direct tap sums for "same"
//!   convolutions with few channels (`direct_kernel_grad_pays`).
//!
//! The direct kernel (`direct_conv`) replaced im2col GEMM where it applies: the input is
//! copied once into zero-bordered planes instead of k² times into a matrix, and the kernel is
//! the one inference runs (vectorised along rows, AVX-512/AVX2/NEON by run-time dispatch).
//!
//! The cost of im2col is a transient buffer of k² times the input (≈190 MB for 16 channels at
//! 640×512 with a 3×3 kernel) and, in training, one copy of the output (Candle's custom-op API
//! wants an owned output storage).

use super::cpu_storage::{cpu_f32_slice, f32_slice, is_cpu_f32, par_zeroed};
use crate::engine::buffers::{Geom, Planes};
use crate::engine::kernels::conv::{conv as kernel_conv, tap_sums, ConvWeights};
use crate::engine::kernels::staging::Staging;
use crate::engine::kernels::winograd;
use crate::engine::kernels::Epilogue;
use crate::engine::simd::Isa;
use crate::engine::threads::ThreadPool;
use candle_core::{CpuStorage, CustomOp2, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Mutex, OnceLock};

/// `x (B, Cin, H, W) ⋆ w (Cout, Cin, k, k)`, stride 1, zero padding `padding`, dilation
/// `dilation`. On the CPU in f32: the direct kernel or im2col GEMM (see the module doc), with
/// the fast backward when anything is trained.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, dilation: usize) -> Result<Tensor> {
    let cpu_f32 = is_cpu_f32(x) && is_cpu_f32(w);
    let (_, _, kh, kw) = w.dims4()?;
    if cpu_f32 && kh == 1 && kw == 1 && padding == 0 {
        return conv1x1(x, w);
    }
    // The input gradient's padding, dilation·(k − 1) − padding, must not be negative.
    if !cpu_f32 || kh != kw || kh == 1 || dilation * (kh - 1) < padding {
        return x.conv2d(w, padding, 1, dilation, 1);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, ConvIm2col { padding, dilation })
    } else {
        conv2d_im2col(&x, &w, padding, dilation)
    }
}

/// A 1×1 convolution as one batched GEMM, `W (Cout, Cin) · x (B, Cin, H·W)`. Why not Candle's
/// conv2d: its backward computes the input gradient with the direct `conv_transpose2d` loop
/// (`vec_dot`, 4.5 % of a lite seg training step); as a matmul, both gradients are GEMMs too.
fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, cin, h, wd) = x.dims4()?;
    let cout = w.dim(0)?;
    w.reshape((cout, cin))?
        .broadcast_left(b)?
        .matmul(&x.reshape((b, cin, h * wd))?)?
        .reshape((b, cout, h, wd))
}

/// The forward of a contiguous CPU f32 `x` and `w`: the direct kernel for a "same"
/// convolution, else im2col GEMM, `W (Cout, Cin·k²) · im2col(x) (B, Cin·k², HO·WO)`.
fn conv2d_im2col(x: &Tensor, w: &Tensor, padding: usize, dilation: usize) -> Result<Tensor> {
    let (b, cin, h, wd) = x.dims4()?;
    let (cout, _, k, _) = w.dims4()?;
    if direct_applies(k, padding, dilation) {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let x = cpu_f32_slice(&xs, xl, "conv2d input")?;
        let w = cpu_f32_slice(&ws, wl, "conv2d kernel")?;
        if let Some(y) = direct_conv(x, (b, cin, h, wd), w, cout, k) {
            return Tensor::from_vec(y, (b, cout, h, wd), &Device::Cpu);
        }
    }
    let out = output_size((h, wd), k, padding, dilation)?;
    kernel_times_cols(w, &im2col(x, k, padding, dilation, out)?, out)
}

/// Whether the engine's direct kernel computes this convolution: "same" padding, no
/// dilation, k ∈ {3, 5, 7} (1×1 convolutions are a matmul, see [`conv1x1`]).
fn direct_applies(k: usize, padding: usize, dilation: usize) -> bool {
    dilation == 1 && padding == k / 2 && matches!(k, 3 | 5 | 7)
}

/// A "same" convolution of `x` (B, Cin, H, W) with an OIHW kernel by the inference engine's
/// direct kernel (`engine::kernels::conv`): the input is copied once into zero-bordered
/// planes, where im2col would write k² copies and a GEMM read them back. `None` when the
/// kernel's thread pool cannot be started (the caller falls back to im2col).
///
/// Every 3×3 and the 7×7 spatial-attention convolution's forward and input gradient take this
/// path in training: the lite seg step (`srsnet bench --train seg --batch 8 --warmup 1
/// --iters 3`, 256², 2 threads) went from 0.89–0.92 to 1.22–1.25 images/s, alternating runs.
fn direct_conv(
    x: &[f32],
    (b, cin, h, w): (usize, usize, usize, usize),
    oihw: &[f32],
    cout: usize,
    k: usize,
) -> Option<Vec<f32>> {
    let ig = Geom { h, w, pad: k / 2 };
    let og = Geom { h, w, pad: 0 };
    let mut weights = ConvWeights::new(oihw, None, cout, cin, k);
    // The layers where inference uses Winograd F(2×2, 3×3) (wide 3×3, even sizes) use it here too.
    if winograd::suits(k, cin, cout, og) {
        weights.use_winograd();
    }
    let padded = bordered_planes(x, b * cin, ig);
    let mut y = par_zeroed(b * cout * h * w);
    with_kernel_pool(|pool| {
        let isa = Isa::best();
        let mut staging = Staging::default();
        staging.ensure(pool.threads(), weights.scratch_floats(pool.threads(), og, 0));
        for (frame, out) in y.chunks_mut(cout * h * w).enumerate() {
            let src = Planes {
                data: &padded[frame * cin * ig.plane()..(frame + 1) * cin * ig.plane()],
                g: ig,
                n: cin,
            };
            kernel_conv(
                isa,
                pool,
                &[src],
                &[],
                &mut staging,
                &weights,
                out,
                og,
                &Epilogue::default(),
            );
        }
    })?;
    Some(y)
}

/// The kernel gradient of a "same" convolution, `∂w[o, c, i, j] = Σ_b Σ_(y,x) g[b, o, y, x] ·
/// x_padded[b, c, y + i, x + j]`, from `xp` (the input's B·Cin zero-bordered planes, border
/// k/2) and `g` (B, Cout, H, W): per (o, c) pair and tap, one dot product per row, summed in
/// f64 (`engine::kernels::conv::tap_sums`). Where im2col GEMM wrote k² copies of the input and
/// packed both operands, this reads each row in place, once per k² taps: the lite seg step
/// went from 1.24 to 1.43–1.51 images/s and its peak memory from 3.29 to 2.76 GB (same bench
/// command as [`direct_conv`], alternating runs).
fn direct_kernel_grad(
    xp: &[f32],
    g: &[f32],
    (b, cin, cout, h, w): (usize, usize, usize, usize, usize),
    k: usize,
) -> Vec<f32> {
    let ig = Geom { h, w, pad: k / 2 };
    let isa = Isa::best();
    let mut gw = vec![0f32; cout * cin * k * k];
    gw.par_chunks_mut(k * k).enumerate().for_each(|(pair, out)| {
        let (o, c) = (pair / cin, pair % cin);
        let mut acc = vec![0f64; k * k];
        for bi in 0..b {
            let gp = &g[(bi * cout + o) * h * w..(bi * cout + o + 1) * h * w];
            let xpl = &xp[(bi * cin + c) * ig.plane()..(bi * cin + c + 1) * ig.plane()];
            tap_sums(isa, gp, xpl, ig, k, &mut acc);
        }
        out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
    });
    gw
}

/// Whether the direct kernel gradient beats im2col GEMM: for few channels, where im2col and
/// the GEMM's packing cost more than its arithmetic. Each (output, input) channel pair reads
/// both planes again, so at many channels the GEMM's operand reuse wins. Measured again after
/// the GEMM moved to pixel rows (`im2col_pixel_rows`), with the bench command of
/// [`direct_conv`] (seg stage, batch 8; lite at 256², official at 128², one run per limit and
/// pair, alternating, on a loaded machine), limits 256 / 16,384 / unlimited: lite 2.30–2.59 /
/// 2.36–2.69 / 2.70–2.81 images/s, official 0.90–1.09 / 1.00–1.08 / 0.81–0.89. Lite's widest
/// pair (4,096) is under the limit; official's 128- and 256-channel layers stay on the GEMM.
fn direct_kernel_grad_pays(cin: usize, cout: usize) -> bool {
    cin * cout <= 16384
}

/// The thread pool of the direct training convolutions, as many threads as rayon's (the
/// GEMMs' pool), started on first use. The engine's kernels run on their own pool, not on
/// rayon (see `engine::threads`); the two never run at the same time here, because a
/// training step runs one op after another. Concurrent callers (tests) take turns.
fn with_kernel_pool<R>(f: impl FnOnce(&ThreadPool) -> R) -> Option<R> {
    static POOL: OnceLock<Option<Mutex<ThreadPool>>> = OnceLock::new();
    let pool = POOL.get_or_init(|| ThreadPool::new(rayon::current_num_threads()).ok().map(Mutex::new));
    let guard = pool.as_ref()?.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(f(&guard))
}

/// `planes` planes of (H, W) copied into the interiors of zero-bordered planes of geometry `g`.
/// Each element is written once, the border zeroed and the interior copied: zeroing whole planes
/// first was a memset of every input a training convolution reads (three per layer and step).
fn bordered_planes(x: &[f32], planes: usize, g: Geom) -> Vec<f32> {
    let len = planes * g.plane();
    let (s, zero) = (g.stride(), MaybeUninit::new(0.0));
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(g.plane())
        .enumerate()
        .for_each(|(i, plane)| {
            let src = &x[i * g.h * g.w..(i + 1) * g.h * g.w];
            let (top, rest) = plane.split_at_mut(g.pad * s);
            let (body, bottom) = rest.split_at_mut(g.h * s);
            top.fill(zero);
            bottom.fill(zero);
            for (dst, row) in body.chunks_exact_mut(s).zip(src.chunks_exact(g.w)) {
                let (left, rest) = dst.split_at_mut(g.pad);
                let (interior, right) = rest.split_at_mut(g.w);
                left.fill(zero);
                right.fill(zero);
                interior
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| *o = MaybeUninit::new(v));
            }
        });
    // SAFETY: each of the `planes` chunks of `g.plane()` elements was written in full above:
    // `pad` rows on top and bottom, and `pad` + `w` + `pad` values in each of the `h` rows.
    unsafe { out.set_len(len) };
    out
}

/// The output (HO, WO) of a stride-1 convolution; an error when the kernel does not fit.
fn output_size((h, w): (usize, usize), k: usize, padding: usize, dilation: usize) -> Result<(usize, usize)> {
    let span = dilation * (k - 1);
    if h + 2 * padding <= span || w + 2 * padding <= span {
        candle_core::bail!("conv2d: a {h}×{w} input is smaller than the {k}×{k} kernel's dilated span");
    }
    Ok((h + 2 * padding - span, w + 2 * padding - span))
}

/// `W (Cout, Cin·k²) · cols (B, Cin·k², HO·WO)` reshaped to (B, Cout, HO, WO).
fn kernel_times_cols(w: &Tensor, cols: &Tensor, (ho, wo): (usize, usize)) -> Result<Tensor> {
    let (cout, cin, k, _) = w.dims4()?;
    let b = cols.dim(0)?;
    w.reshape((cout, cin * k * k))?
        .broadcast_left(b)?
        .matmul(cols)?
        .reshape((b, cout, ho, wo))
}

/// The autograd op; arguments `(x, w)`.
#[derive(Debug, Clone, Copy)]
struct ConvIm2col {
    padding: usize,
    dilation: usize,
}

impl CustomOp2 for ConvIm2col {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        // im2col reads the input storage directly: no copy of x before the one im2col makes.
        let dims = xl.shape().dims4()?;
        let k = wl.shape().dims4()?.2;
        let out = output_size((dims.2, dims.3), k, self.padding, self.dilation)?;
        let x = f32_slice(xs, xl, "conv2d input")?;
        let cout = wl.shape().dims4()?.0;
        if direct_applies(k, self.padding, self.dilation) {
            if let Some(y) = direct_conv(x, dims, f32_slice(ws, wl, "conv2d kernel")?, cout, k) {
                return Ok((CpuStorage::F32(y), Shape::from((dims.0, cout, out.0, out.1))));
            }
        }
        let cols = im2col_slice(x, dims, k, self.padding, self.dilation, out)?;
        let w = Tensor::from_slice(f32_slice(ws, wl, "conv2d kernel")?, wl.shape(), &Device::Cpu)?;
        let y = kernel_times_cols(&w, &cols, out)?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) if layout.is_contiguous() && layout.start_offset() == 0 => {
                Ok((CpuStorage::F32(v.clone()), y.shape().clone()))
            }
            _ => candle_core::bail!("conv2d: unexpected output layout"),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (cout, cin, k, _) = w.dims4()?;
        let d = self.dilation;
        let g = g.contiguous()?;
        // ∂x: correlate the gradient with the kernel rotated by 180° and with in/out swapped.
        let w_t = w.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
        let gx = conv2d_im2col(&g, &w_t, d * (k - 1) - self.padding, d)?;
        // ∂w[o, c, i, j] = Σ_b Σ_p g[b, o, p] · x_padded[b, c, p + d·(i, j)].
        let (b, _, ho, wo) = g.dims4()?;
        if direct_applies(k, self.padding, d) && direct_kernel_grad_pays(cin, cout) {
            let (x, g) = (x.contiguous()?, g.contiguous()?);
            let (xs, xl) = x.storage_and_layout();
            let (gs, gl) = g.storage_and_layout();
            let xp = bordered_planes(
                cpu_f32_slice(&xs, xl, "conv2d input")?,
                b * cin,
                Geom {
                    h: ho,
                    w: wo,
                    pad: k / 2,
                },
            );
            let gw = direct_kernel_grad(
                &xp,
                cpu_f32_slice(&gs, gl, "conv2d output gradient")?,
                (b, cin, cout, ho, wo),
                k,
            );
            return Ok((Some(gx), Some(Tensor::from_vec(gw, (cout, cin, k, k), &Device::Cpu)?)));
        }
        let x = x.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let x_dims = xl.shape().dims4()?;
        let pixels = im2col_pixel_rows(
            cpu_f32_slice(&xs, xl, "conv2d input")?,
            x_dims,
            k,
            self.padding,
            d,
            (ho, wo),
        )?;
        let gw = pixel_rows(&g)?.t()?.matmul(&pixels)?.reshape((cout, cin, k, k))?;
        Ok((Some(gx), Some(gw)))
    }
}

/// `g` (B, C, H, W) as (B·H·W, C): one row per pixel, its channels side by side.
fn pixel_rows(g: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = g.dims4()?;
    g.reshape((b, c, h * w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b * h * w, c))
}

/// The im2col matrix transposed, one row per output pixel: (B·HO·WO, C·k·k), element
/// `(b·HO·WO + p, c·k·k + i·k + j)` the input that tap (i, j) of channel c sees at output
/// position p (zero in the padding). The kernel gradient is then one GEMM over all pixels of
/// all samples, `∂w (Cout, C·k²) = pixel_rows(g)ᵀ · this`.
///
/// Why this layout and not `g · im2colᵀ` per sample: there both operands run along the
/// pixels, so the GEMM's packing gathers each row of `g` with a stride of a whole plane. In a
/// lite seg training step the two calls with 16 output channels at 128² (K = 16,384) took 1.1
/// and 1.8 s each, 20× what the same call took on the same data in a separate program (a
/// cache-set effect of the 64 KB stride that we did not pin down); with both operands read
/// along their rows here, neither gathers.
fn im2col_pixel_rows(
    data: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    k: usize,
    padding: usize,
    dilation: usize,
    (ho, wo): (usize, usize),
) -> Result<Tensor> {
    let taps = c * k * k;
    let len = b * ho * wo * taps;
    let mut rows: Vec<f32> = Vec::with_capacity(len);
    // One output image row per task: WO pixel rows of C·k² values, written tap by tap.
    rows.spare_capacity_mut()[..len]
        .par_chunks_mut(wo * taps)
        .enumerate()
        .for_each(|(line, out)| {
            let (bi, oy) = (line / ho, line % ho);
            for col in 0..taps {
                let (ci, tap) = (col / (k * k), col % (k * k));
                let iy = oy as isize + (tap / k * dilation) as isize - padding as isize;
                let dx = (tap % k * dilation) as isize - padding as isize;
                let (lo, hi) = inside_columns(dx, w, wo);
                let inside = iy >= 0 && iy < h as isize;
                let src = &data[(bi * c + ci) * h * w..][..h * w];
                for ox in 0..wo {
                    let v = if inside && (lo..hi).contains(&ox) {
                        src[iy as usize * w + (ox as isize + dx) as usize]
                    } else {
                        0.0
                    };
                    out[ox * taps + col] = MaybeUninit::new(v);
                }
            }
        });
    // SAFETY: each chunk holds WO pixel rows of `taps` values, and the loops above write every
    // (pixel, column) pair of it once.
    unsafe { rows.set_len(len) };
    Tensor::from_vec(rows, (b * ho * wo, taps), &Device::Cpu)
}

/// The output columns `lo..hi` (of `wo`) whose input column `ox + dx` lies inside a row of `w`.
fn inside_columns(dx: isize, w: usize, wo: usize) -> (usize, usize) {
    let lo = (-dx).clamp(0, wo as isize) as usize;
    let hi = (w as isize - dx).clamp(lo as isize, wo as isize) as usize;
    (lo, hi)
}

/// The im2col matrix of a contiguous CPU f32 tensor (B, C, H, W): (B, C·k·k, HO·WO), row
/// `c·k·k + i·k + j` holding the input seen by kernel tap (i, j) at every output position
/// (zero where it falls in the padding).
pub fn im2col(x: &Tensor, k: usize, padding: usize, dilation: usize, out: (usize, usize)) -> Result<Tensor> {
    let (storage, layout) = x.storage_and_layout();
    let data = cpu_f32_slice(&storage, layout, "im2col input")?;
    im2col_slice(data, x.dims4()?, k, padding, dilation, out)
}

/// [`im2col`] of raw contiguous (B, C, H, W) data.
fn im2col_slice(
    data: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    k: usize,
    padding: usize,
    dilation: usize,
    (ho, wo): (usize, usize),
) -> Result<Tensor> {
    let len = b * c * k * k * ho * wo;
    // Not zero-initialised: every element is written once below, zeros only where a tap falls
    // in the padding. `vec![0; len]` zeroed the whole matrix on the calling thread first (glibc
    // serves training's large blocks from the heap, where calloc must memset): a tenth of a
    // lite seg training step, with the other cores idle.
    let mut cols: Vec<f32> = Vec::with_capacity(len);
    cols.spare_capacity_mut()[..len]
        .par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(row, out)| {
            let (plane_index, tap) = (row / (k * k), row % (k * k));
            let plane = &data[plane_index * h * w..(plane_index + 1) * h * w];
            let dy = (tap / k * dilation) as isize - padding as isize;
            let dx = (tap % k * dilation) as isize - padding as isize;
            for (oy, out_row) in out.chunks_mut(wo).enumerate() {
                let iy = oy as isize + dy;
                if iy < 0 || iy >= h as isize {
                    out_row.fill(MaybeUninit::new(0.0));
                    continue;
                }
                // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; viewing initialised values
                // through it is always sound, and lets the copy below be one memcpy.
                let src: &[MaybeUninit<f32>] = unsafe {
                    &*(&plane[iy as usize * w..(iy as usize + 1) * w] as *const [f32] as *const [MaybeUninit<f32>])
                };
                let (lo, hi) = inside_columns(dx, w, wo);
                out_row[..lo].fill(MaybeUninit::new(0.0));
                if lo < hi {
                    let s = (lo as isize + dx) as usize;
                    out_row[lo..hi].copy_from_slice(&src[s..s + (hi - lo)]);
                }
                out_row[hi..].fill(MaybeUninit::new(0.0));
            }
        });
    // SAFETY: the loop above wrote all `len` elements: each chunk is one (plane, tap) row of
    // HO·WO values, and each of its rows is written in full (zeros, copied values, zeros).
    unsafe { cols.set_len(len) };
    Tensor::from_vec(cols, (b, c * k * k, ho * wo), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{max_abs, max_abs_diff};
    use candle_core::{DType, Var};

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        max_abs_diff(a, b).unwrap() / max_abs(b).unwrap().max(1e-6)
    }

    /// Values and both gradients equal Candle's conv2d (whose backward is the reference here,
    /// checked itself against PyTorch by the training-parity fixture).
    #[test]
    fn matches_candle_conv_in_value_and_gradients() -> Result<()> {
        for (cin, cout, k, padding, dilation, size) in [
            (3, 5, 3, 1, 1, 9),
            (4, 2, 7, 3, 1, 12),
            (6, 6, 3, 2, 2, 10),
            (5, 3, 1, 0, 1, 7),
            (2, 4, 3, 0, 1, 8),
            // Taps that miss a whole row or column of this 2×5 input (all padding).
            (2, 3, 7, 3, 1, 2),
            // Direct forward, kernel gradient by GEMM over pixel rows (129·128 channel pairs
            // > 16,384).
            (129, 128, 3, 1, 1, 6),
        ] {
            assert_matches_candle((2, cin, size, size + 3), (cout, k), padding, dilation)?;
        }
        Ok(())
    }

    /// Our conv2d of random `x` (B, Cin, H, W) and a random (Cout, Cin, k, k) kernel against
    /// Candle's, in value (tracked and untracked) and in both gradients.
    fn assert_matches_candle(
        x_dims: (usize, usize, usize, usize),
        (cout, k): (usize, usize),
        padding: usize,
        dilation: usize,
    ) -> Result<()> {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, x_dims, &d)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, (cout, x_dims.1, k, k), &d)?)?;
        let want = x.conv2d(&w, padding, 1, dilation, 1)?;
        let got = conv2d(&x, &w, padding, dilation)?;
        assert_eq!(got.dims(), want.dims());
        // Relative to the largest output; sums of up to 1,161 products, in another order.
        assert!(max_rel(&got, &want) < 1e-5);
        // Inference (nothing tracked) takes the direct im2col path: same values.
        let plain = conv2d(&x.as_tensor().detach(), &w.as_tensor().detach(), padding, dilation)?;
        assert!(!plain.track_op());
        assert!(max_rel(&plain, &want) < 1e-5);
        let weights = Tensor::randn(0f32, 1.0, want.shape(), &d)?;
        let gw = (want * &weights)?.sum_all()?.backward()?;
        let gg = (got * &weights)?.sum_all()?.backward()?;
        for v in [&x, &w] {
            let e = max_rel(gg.get(v).expect("grad"), gw.get(v).expect("grad"));
            assert!(e < 1e-5, "k{k} p{padding} d{dilation}: relative gradient error {e}");
        }
        Ok(())
    }

    /// A wide 3×3 layer at even sizes runs its forward as Winograd F(2×2, 3×3), as inference
    /// does (its input gradient too where 32 → 16 is wide enough, which it is not here): same
    /// values and gradients as Candle's conv2d.
    #[test]
    fn wide_layers_match_candle_through_winograd() -> Result<()> {
        let (cin, cout) = (16, 32);
        assert!(winograd::suits(3, cin, cout, Geom { h: 8, w: 10, pad: 0 }));
        assert_matches_candle((2, cin, 8, 10), (cout, 3), 1, 1)
    }

    #[test]
    fn a_kernel_larger_than_the_input_is_an_error() -> Result<()> {
        let x = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((1, 2, 7, 7), DType::F32, &Device::Cpu)?;
        let err = conv2d(&x, &w, 1, 1).unwrap_err().to_string();
        assert!(err.contains("3×3") && err.contains("7×7"), "{err}");
        Ok(())
    }

    #[test]
    fn pixel_rows_are_the_im2col_matrix_transposed() -> Result<()> {
        let d = Device::Cpu;
        for (k, padding, dilation) in [(3, 1, 1), (3, 2, 2), (5, 0, 1)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 11), &d)?;
            let out = output_size((9, 11), k, padding, dilation)?;
            let cols = im2col(&x, k, padding, dilation, out)?; // (B, C·k², P)
            let want = cols
                .transpose(1, 2)?
                .contiguous()?
                .reshape((2 * out.0 * out.1, 3 * k * k))?;
            let got = im2col_pixel_rows(&x.flatten_all()?.to_vec1()?, (2, 3, 9, 11), k, padding, dilation, out)?;
            assert_eq!(max_abs_diff(&got, &want)?, 0.0, "k{k} p{padding} d{dilation}");
        }
        Ok(())
    }

    #[test]
    fn im2col_places_taps_and_zero_padding() -> Result<()> {
        // One 2×3 plane 1..6, 3×3 kernel, padding 1: the centre tap row is the plane itself,
        // the top-left tap sees padding on the first row and column.
        let x = Tensor::arange(1f32, 7., &Device::Cpu)?.reshape((1, 1, 2, 3))?;
        let cols = im2col(&x, 3, 1, 1, (2, 3))?.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(cols[4], vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(cols[0], vec![0., 0., 0., 0., 1., 2.]);
        assert_eq!(cols[8], vec![5., 6., 0., 0., 0., 0.]);
        Ok(())
    }
}
