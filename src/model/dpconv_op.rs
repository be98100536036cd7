//! DPConv fused per frame as one op, for the GPU: each frame's kernel is generated from the
//! pooled info vector inside the convolution, and the whole batch is one launch
//! (`src/cuda/dpconv.cu`) -- not B convolutions, and no (B, N·M·K²) kernel tensor.
//!
//! `out[b, n] = Σ_m θ_b[n, m] ⋆ x[b, m]` with `θ_b[j] = Wg[j]·p[b, j / G] + Bg[j]` (see
//! the DPConv layer, `model::dpconv`). The CPU implementation is the op's twin: the same loops in the same
//! order, tested against the reference form on the CPU, so the CUDA kernel has a reference
//! wherever it runs. The feature map may be f16 or f32; the pooled scalars and the generator
//! are f32, and so is all arithmetic. Inference only (no backward): training keeps the Candle
//! composition.

use super::cpu_storage::par_zeroed;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// The op: sizes of one DPConv.
#[derive(Debug, Clone, Copy)]
pub struct FusedDpConv {
    /// N = M: channels in and out.
    pub channels: usize,
    /// K: the kernel side (odd).
    pub kernel: usize,
    /// z: pooled info scalars per frame.
    pub info: usize,
}

impl FusedDpConv {
    /// Generator outputs per pooled scalar: G = N·M·K² / z.
    fn group(&self) -> usize {
        self.channels * self.channels * self.kernel * self.kernel / self.info
    }

    /// Checks the three inputs and returns (B, H, W).
    fn check(&self, x: &Layout, p: &Layout, gen: &Layout) -> Result<(usize, usize, usize)> {
        let (b, c, h, w) = x.shape().dims4()?;
        let n = self.channels * self.channels * self.kernel * self.kernel;
        if c != self.channels || p.shape().dims() != [b, self.info] || gen.shape().dims() != [2, n] {
            candle_core::bail!(
                "DPConv: x {:?}, p {:?}, generator {:?}; expected (B, {}, H, W), (B, {}), (2, {n})",
                x.shape(),
                p.shape(),
                gen.shape(),
                self.channels,
                self.info
            );
        }
        if self.info == 0 || !n.is_multiple_of(self.info) || self.kernel.is_multiple_of(2) {
            candle_core::bail!(
                "DPConv: {n} kernel elements over {} info scalars, kernel {}",
                self.info,
                self.kernel
            );
        }
        Ok((b, h, w))
    }

    /// The op's arithmetic on slices, in f32: what each CUDA thread computes.
    fn run_f32(&self, x: &[f32], p: &[f32], gen: &[f32], (b, h, w): (usize, usize, usize)) -> Vec<f32> {
        let (c, k) = (self.channels, self.kernel);
        let (ck2, r, group) = (c * k * k, (k / 2) as isize, self.group());
        let (wg, bg) = gen.split_at(c * ck2);
        let mut out = par_zeroed(b * c * h * w);
        let mut theta = vec![0f32; ck2];
        for f in 0..b {
            for n in 0..c {
                for (i, t) in theta.iter_mut().enumerate() {
                    let j = n * ck2 + i;
                    *t = wg[j] * p[f * self.info + j / group] + bg[j];
                }
                let dst = &mut out[(f * c + n) * h * w..][..h * w];
                for (pixel, o) in dst.iter_mut().enumerate() {
                    let (y, xo) = ((pixel / w) as isize, (pixel % w) as isize);
                    let mut acc = 0f32;
                    for m in 0..c {
                        let plane = &x[(f * c + m) * h * w..][..h * w];
                        for ky in 0..k {
                            let yy = y + ky as isize - r;
                            if yy < 0 || yy >= h as isize {
                                continue;
                            }
                            for kx in 0..k {
                                let xx = xo + kx as isize - r;
                                if xx < 0 || xx >= w as isize {
                                    continue;
                                }
                                acc += theta[m * k * k + ky * k + kx] * plane[yy as usize * w + xx as usize];
                            }
                        }
                    }
                    *o = acc;
                }
            }
        }
        out
    }
}

/// The contiguous f32 values of a CPU input.
fn values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<std::borrow::Cow<'a, [f32]>> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("DPConv: {what} must be contiguous")))?;
    Ok(match s {
        CpuStorage::F32(v) => std::borrow::Cow::Borrowed(&v[start..end]),
        CpuStorage::F16(v) => std::borrow::Cow::Owned(v[start..end].iter().map(|x| x.to_f32()).collect()),
        _ => candle_core::bail!("DPConv: {what} has dtype {:?}; expected f32 or f16", s.dtype()),
    })
}

impl CustomOp3 for FusedDpConv {
    fn name(&self) -> &'static str {
        "srsnet-dpconv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = self.check(l1, l2, l3)?;
        let out = self.run_f32(
            &values(s1, l1, "x")?,
            &values(s2, l2, "p")?,
            &values(s3, l3, "generator")?,
            dims,
        );
        let storage = match s1.dtype() {
            DType::F16 => CpuStorage::F16(out.into_iter().map(half::f16::from_f32).collect()),
            _ => CpuStorage::F32(out),
        };
        Ok((storage, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = self.check(l1, l2, l3)?;
        if (s2.dtype(), s3.dtype()) != (DType::F32, DType::F32) {
            candle_core::bail!(
                "DPConv on CUDA: p and the generator must be f32, not {:?} and {:?}",
                s2.dtype(),
                s3.dtype()
            );
        }
        let inputs = ((s1, l1), (s2, l2), (s3, l3));
        let storage = match s1.dtype() {
            DType::F32 => cuda::launch::<f32>(self, "dpconv_f32", inputs, dims)?,
            DType::F16 => cuda::launch::<half::f16>(self, "dpconv_f16", inputs, dims)?,
            other => candle_core::bail!("DPConv on CUDA: x has dtype {other:?}; expected f32 or f16"),
        };
        Ok((storage, l1.shape().clone()))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::FusedDpConv;
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, WrapErr};
    use candle_core::{CudaStorage, Layout, Result};

    /// The kernels, compiled by `build.rs` with nvcc.
    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/dpconv.ptx"));
    /// Threads per block: pixels of one (frame, channel) tile; must equal `TILE` in the kernel.
    const TILE: u32 = 256;

    type Input<'a> = (&'a CudaStorage, &'a Layout);

    fn view<'a, T: CudaDType>(
        (s, l): Input<'a>,
        what: &str,
    ) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
        let (start, end) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg(format!("DPConv: {what} must be contiguous")))?;
        Ok(s.as_cuda_slice::<T>()?.slice(start..end))
    }

    pub(super) fn launch<T: CudaDType + DeviceRepr>(
        op: &FusedDpConv,
        func: &str,
        (x, p, gen): (Input, Input, Input),
        (b, h, w): (usize, usize, usize),
    ) -> Result<CudaStorage> {
        let dev = x.0.device().clone();
        let (xv, pv, gv) = (view::<T>(x, "x")?, view::<f32>(p, "p")?, view::<f32>(gen, "generator")?);
        let c = op.channels;
        let ck2 = c * op.kernel * op.kernel;
        let cfg = LaunchConfig {
            grid_dim: ((h * w).div_ceil(TILE as usize) as u32, c as u32, b as u32),
            block_dim: (TILE, 1, 1),
            shared_mem_bytes: (ck2 * std::mem::size_of::<f32>()) as u32,
        };
        let kernel = dev.get_or_load_custom_func(func, "srsnet_dpconv", PTX)?;
        // SAFETY: every element is written by the kernel (one thread per output pixel).
        let out = unsafe { dev.alloc::<T>(b * c * h * w)? };
        let mut builder = kernel.builder();
        builder.arg(&xv);
        builder.arg(&pv);
        builder.arg(&gv);
        builder.arg(&out);
        candle_core::builder_arg!(
            builder,
            c as i32,
            h as i32,
            w as i32,
            op.kernel as i32,
            op.info as i32,
            op.group() as i32
        );
        // SAFETY: the argument list matches `dpconv_f32` / `dpconv_f16` in src/cuda/dpconv.cu.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev))
    }
}

/// `DPConv(X, Y)` from the pooled info `p` (B, z) and the generator `gen` (2, N·M·K²: the
/// weights, then the biases), as one op; see the module doc.
pub fn dpconv_fused(x: &Tensor, p: &Tensor, gen: &Tensor, op: FusedDpConv) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3_no_bwd(&p.contiguous()?, &gen.contiguous()?, &op)
}
