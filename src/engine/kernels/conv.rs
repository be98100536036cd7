//! Direct "same" convolution, stride 1, K ∈ {1, 3, 5, 7}, over planar channels with a zero
//! border: bias, an optional residual add, ReLU or sigmoid fused into the one pass that writes
//! the output.
//!
//! Work is vectorised along the image row: each step computes a block of 8 (then 4, then 1)
//! output channels × `V` vectors of adjacent pixels, so one input vector load feeds eight FMAs
//! and one broadcast weight feeds `V`. With 8 × 3 accumulators in AVX-512's or NEON's 32
//! registers the input loads, which come from L2 once a layer's input rows outgrow L1, are
//! one per eight FMAs; a block of 8 is also exactly the lite model's width at full
//! resolution. AVX2 has 16 registers, and there a block of 8 runs as two halves of
//! 4 channels × 2 vectors (see `ConvTask::with_simd`). The input may be a concatenation read in
//! place, so no layer ever copies its inputs together.

use super::super::buffers::{Geom, Planes};
use super::super::simd::{load, store, Isa};
use super::super::threads::{SharedOut, ThreadPool};
use super::staging::{conv_bands, stage_rows, staging_floats, Staging, Upsampled};
use super::winograd::{self, winograd_conv, WinogradWeights};
use super::{sigmoid, Epilogue};
use pulp::{Simd, WithSimd};

/// Output channels computed together: blocks of 8, then 4, then single channels.
const CO: usize = 4;
const CO_WIDE: usize = 8;

/// One group of output channels and where its packed weights start.
#[derive(Debug, Clone, Copy)]
struct CoBlock {
    co0: usize,
    co: usize,
    offset: usize,
}

/// A convolution's weights, packed for the kernel: per block of 4 output channels,
/// `[input channel][tap][lane]`, so the inner loop reads four consecutive weights per tap.
#[derive(Debug, Clone)]
pub struct ConvWeights {
    /// Kernel side.
    pub k: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    packed: Vec<f32>,
    bias: Vec<f32>,
    blocks: Vec<CoBlock>,
    /// The kernel in the Winograd domain, once [`ConvWeights::use_winograd`] has moved it there
    /// (`packed` is then empty): the convolution runs through `kernels::winograd`.
    wino: Option<WinogradWeights>,
}

impl ConvWeights {
    /// Packs an OIHW kernel `(cout, cin, k, k)` and an optional bias.
    pub fn new(oihw: &[f32], bias: Option<&[f32]>, cout: usize, cin: usize, k: usize) -> Self {
        assert_eq!(oihw.len(), cout * cin * k * k, "kernel size");
        let mut blocks = Vec::new();
        let mut offset = 0;
        let mut co0 = 0;
        while co0 < cout {
            let co = match cout - co0 {
                r if r >= CO_WIDE => CO_WIDE,
                r if r >= CO => CO,
                _ => 1,
            };
            blocks.push(CoBlock { co0, co, offset });
            offset += cin * k * k * co;
            co0 += co;
        }
        let mut w = Self {
            k,
            cin,
            cout,
            packed: vec![0.0; offset],
            bias: bias.map_or_else(|| vec![0.0; cout], <[f32]>::to_vec),
            blocks,
            wino: None,
        };
        w.repack(|o, i, t| oihw[(o * cin + i) * k * k + t]);
        w
    }

    /// Rewrites the packed kernel from `weight(out channel, in channel, tap)`, allocating
    /// nothing: DPConv writes each frame's generated kernel straight into this layout.
    pub fn repack(&mut self, weight: impl Fn(usize, usize, usize) -> f32) {
        if let Some(wino) = &mut self.wino {
            return wino.repack(weight);
        }
        let kk = self.k * self.k;
        for b in &self.blocks {
            let dst = &mut self.packed[b.offset..b.offset + self.cin * kk * b.co];
            for ci in 0..self.cin {
                for t in 0..kk {
                    for lane in 0..b.co {
                        dst[(ci * kk + t) * b.co + lane] = weight(b.co0 + lane, ci, t);
                    }
                }
            }
        }
    }

    /// Copies `base` with input channel `i` scaled by `scale[i]` (channels past `scale.len()`
    /// unscaled): a per-channel gate on the input folded into the weights.
    pub fn scale_inputs_from(&mut self, base: &ConvWeights, scale: &[f32]) {
        if let (Some(wino), Some(from)) = (&mut self.wino, &base.wino) {
            return wino.scale_inputs_from(from, scale);
        }
        assert!(
            self.wino.is_none() && base.wino.is_none(),
            "scaling between kernel layouts"
        );
        let kk = self.k * self.k;
        for b in &self.blocks {
            for ci in 0..self.cin {
                let s = scale.get(ci).copied().unwrap_or(1.0);
                let at = b.offset + ci * kk * b.co;
                let n = kk * b.co;
                for (d, &w) in self.packed[at..at + n].iter_mut().zip(&base.packed[at..at + n]) {
                    *d = w * s;
                }
            }
        }
    }

    /// Multiply-accumulates per output pixel.
    pub fn macs_per_pixel(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }

    /// Moves a 3×3 kernel into the Winograd domain (the plan does this for the layers where
    /// `winograd::suits`): from then on `conv` runs it through `kernels::winograd`, which
    /// needs the output's sides to be even.
    pub fn use_winograd(&mut self) {
        assert_eq!(self.k, 3, "Winograd F(2×2, 3×3) needs a 3×3 kernel");
        if self.wino.is_some() {
            return;
        }
        let packed = std::mem::take(&mut self.packed);
        // Blocks cover the output channels in order, so each channel's block is one lookup.
        let block_of: Vec<CoBlock> = self.blocks.iter().flat_map(|b| std::iter::repeat_n(*b, b.co)).collect();
        let at = |o: usize, i: usize, t: usize| {
            let b = block_of[o];
            packed[b.offset + (i * 9 + t) * b.co + o - b.co0]
        };
        self.wino = Some(WinogradWeights::new(self.cout, self.cin, at));
    }

    /// Whether the kernel is in the Winograd domain.
    pub fn is_winograd(&self) -> bool {
        self.wino.is_some()
    }

    /// Bytes of kernel (packed or in the Winograd domain) and bias.
    pub fn bytes(&self) -> usize {
        (self.packed.len() + self.bias.len()) * 4 + self.wino.as_ref().map_or(0, WinogradWeights::bytes)
    }

    /// Scratch floats per thread a convolution with these weights needs for output geometry
    /// `og` with `threads` threads, `up_channels` of its input being up-sampled on the fly.
    pub fn scratch_floats(&self, threads: usize, og: Geom, up_channels: usize) -> usize {
        match &self.wino {
            Some(_) => winograd::scratch_floats(self.cin, self.cout),
            None => staging_floats(threads, og, up_channels),
        }
    }
}

/// Convolves the concatenation `src` into the planes of `out` (geometry `og`, `w.cout` planes).
///
/// Every input plane must have the output's interior size and a border of at least `k / 2`,
/// except the `up` parts, which are up-sampled to it (k ≤ 3).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    isa: Isa,
    pool: &ThreadPool,
    src: &[Planes],
    up: &[Upsampled],
    staging: &mut Staging,
    w: &ConvWeights,
    out: &mut [f32],
    og: Geom,
    epi: &Epilogue,
) {
    conv_many(isa, pool, src, up, staging, &mut [ConvJob { w, out, epi: *epi }], og);
}

/// One of several convolutions of the same input (see [`conv_many`]).
pub struct ConvJob<'a, 'o> {
    /// Weights.
    pub w: &'a ConvWeights,
    /// Output planes (`w.cout` of geometry `og`).
    pub out: &'o mut [f32],
    /// What follows the sum.
    pub epi: Epilogue<'a>,
}

/// Runs every job's convolution over the same input in one pass over its rows, so that the
/// input (and its staged, up-sampled parts) is read once for all of them: a block's conv1 and
/// its 1×1 shortcut.
pub fn conv_many(
    isa: Isa,
    pool: &ThreadPool,
    src: &[Planes],
    up: &[Upsampled],
    staging: &mut Staging,
    jobs: &mut [ConvJob],
    og: Geom,
) {
    let cin: usize = src.iter().map(|p| p.n).sum();
    assert!(!jobs.is_empty() && jobs.len() <= 2, "one or two convolutions");
    // A Winograd job runs on its own (it reads the input in tiles, not rows); the rest share
    // the direct pass.
    if let Some(i) = jobs.iter().position(|j| j.w.wino.is_some()) {
        let n = jobs.len();
        let job = &mut jobs[i];
        let (w, wino) = (job.w, job.w.wino.as_ref().expect("winograd"));
        winograd_conv(isa, pool, src, up, staging, wino, &w.bias, job.out, og, &job.epi);
        if n == 2 {
            let other = 1 - i;
            conv_many(isa, pool, src, up, staging, &mut jobs[other..=other], og);
        }
        return;
    }
    let kmax = jobs.iter().map(|j| j.w.k).max().unwrap_or(1);
    for j in jobs.iter() {
        assert_eq!(cin, j.w.cin, "convolution input channels");
        assert!(j.out.len() >= j.w.cout * og.plane(), "convolution output buffer");
        if let Some(r) = &j.epi.residual {
            assert!(r.g == og && r.n >= j.w.cout, "residual geometry");
        }
    }
    let is_up = |i: usize| up.iter().any(|u| u.part == i);
    for (i, p) in src.iter().enumerate() {
        let ok = if is_up(i) {
            kmax <= 3
        } else {
            p.g.h == og.h && p.g.w == og.w && p.g.pad >= kmax / 2
        };
        assert!(ok, "convolution input geometry");
    }
    let up_channels: usize = up.iter().map(|u| src[u.part].n).sum();
    let need = staging_floats(pool.threads(), og, up_channels);
    let (per_thread, stage) = staging.regions(pool.threads(), need);
    // Tasks are bands of rows; each row is computed for every channel block in turn, so the
    // K input rows of all input channels are read from memory once and then served from cache
    // to every block (splitting by channel block instead would re-read the whole input once
    // per block: 64 times for a 256-channel layer).
    let (bands, rows) = conv_bands(pool.threads(), og, up_channels);
    // The closure sees the outputs only as raw pointers (tasks write disjoint rows).
    let n_jobs = jobs.len();
    let outs = [
        SharedOut(jobs[0].out.as_mut_ptr()),
        SharedOut(jobs[n_jobs - 1].out.as_mut_ptr()),
    ];
    let kernels = [(jobs[0].w, jobs[0].epi), (jobs[n_jobs - 1].w, jobs[n_jobs - 1].epi)];
    pool.run_on_threads(bands, &|band, thread| {
        let y0 = band * rows;
        let y1 = (y0 + rows).min(og.h);
        let mut parts = [src[0]; 4];
        parts[..src.len()].copy_from_slice(src);
        let mut row_off = [0usize; 4];
        if !up.is_empty() {
            // SAFETY: thread `thread`'s own region of the staging buffer.
            let region = unsafe { std::slice::from_raw_parts_mut(stage.ptr().add(thread * per_thread), need) };
            let gs = Geom {
                h: y1 - y0,
                w: og.w,
                pad: 1,
            };
            let (planes, scratch) = region.split_at_mut(up_channels * gs.plane());
            let mut at = 0;
            for u in up {
                let n = src[u.part].n * gs.plane();
                stage_rows(isa, src[u.part], u, y0, og.h, gs, &mut planes[at..at + n], scratch);
                at += n;
            }
            let planes: &[f32] = planes;
            let mut at = 0;
            for u in up {
                let n = src[u.part].n;
                parts[u.part] = Planes {
                    data: &planes[at..at + n * gs.plane()],
                    g: gs,
                    n,
                };
                row_off[u.part] = y0;
                at += n * gs.plane();
            }
        }
        for ((w, epi), out) in kernels.iter().zip(outs).take(n_jobs) {
            isa.dispatch(ConvTask {
                src: &parts[..src.len()],
                row_off,
                w,
                rows: y0..y1,
                out,
                og,
                epi,
            });
        }
    });
}

struct ConvTask<'a> {
    src: &'a [Planes<'a>],
    /// Per part, the image row its planes' row 0 holds (staged parts hold only the band).
    row_off: [usize; 4],
    w: &'a ConvWeights,
    rows: std::ops::Range<usize>,
    out: SharedOut,
    og: Geom,
    epi: &'a Epilogue<'a>,
}

impl WithSimd for ConvTask<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // AVX2's 16 registers hold 8 channels × 1 vector of accumulators, whose 8 FMAs per
        // input load leave no slack for the FMA latency (and each broadcast is a load too);
        // 4 channels × 2 vectors ran about 7 % faster on both the official and the lite model
        // (`srsnet bench`, best of 8, AMD EPYC with AVX2 only, README "Speed"). So there a
        // block of 8 is computed as its two halves, reading the same packed weights.
        let halves = S::F32_LANES == 8;
        for y in self.rows.clone() {
            for &b in &self.w.blocks {
                match (self.w.k, b.co, halves) {
                    (1, CO_WIDE, true) => self.halves::<S, 1>(s, b, y),
                    (3, CO_WIDE, true) => self.halves::<S, 3>(s, b, y),
                    (5, CO_WIDE, true) => self.halves::<S, 5>(s, b, y),
                    (7, CO_WIDE, true) => self.halves::<S, 7>(s, b, y),
                    (1, CO_WIDE, false) => self.row::<S, 1, CO_WIDE, CO_WIDE>(s, b, 0, y),
                    (3, CO_WIDE, false) => self.row::<S, 3, CO_WIDE, CO_WIDE>(s, b, 0, y),
                    (5, CO_WIDE, false) => self.row::<S, 5, CO_WIDE, CO_WIDE>(s, b, 0, y),
                    (7, CO_WIDE, false) => self.row::<S, 7, CO_WIDE, CO_WIDE>(s, b, 0, y),
                    (1, CO, _) => self.row::<S, 1, CO, CO>(s, b, 0, y),
                    (3, CO, _) => self.row::<S, 3, CO, CO>(s, b, 0, y),
                    (5, CO, _) => self.row::<S, 5, CO, CO>(s, b, 0, y),
                    (7, CO, _) => self.row::<S, 7, CO, CO>(s, b, 0, y),
                    (1, 1, _) => self.row::<S, 1, 1, 1>(s, b, 0, y),
                    (3, 1, _) => self.row::<S, 3, 1, 1>(s, b, 0, y),
                    (5, 1, _) => self.row::<S, 5, 1, 1>(s, b, 0, y),
                    (7, 1, _) => self.row::<S, 7, 1, 1>(s, b, 0, y),
                    (k, co, _) => unreachable!("no kernel for k = {k}, {co} channels (the plan builder refuses these)"),
                }
            }
        }
    }
}

/// Pointers to one output row of each channel of a block, and the residual rows.
struct Row<'a, const C: usize> {
    out: [*mut f32; C],
    res: Option<[&'a [f32]; C]>,
}

impl ConvTask<'_> {
    /// Output row `y` of a block of 8 channels, as two blocks of 4.
    #[inline(always)]
    fn halves<S: Simd, const K: usize>(&self, s: S, b: CoBlock, y: usize) {
        self.row::<S, K, CO, CO_WIDE>(s, b, 0, y);
        self.row::<S, K, CO, CO_WIDE>(s, b, CO, y);
    }

    /// Output row `y` of channels `lane .. lane + C` of block `b`, whose packed weights hold
    /// `W` lanes per (input channel, tap).
    #[inline(always)]
    fn row<S: Simd, const K: usize, const C: usize, const W: usize>(&self, s: S, b: CoBlock, lane: usize, y: usize) {
        debug_assert!(W == b.co && lane + C <= W);
        let og = self.og;
        let b = CoBlock { co0: b.co0 + lane, ..b };
        let wb = &self.w.packed[b.offset + lane..b.offset + self.w.cin * K * K * W];
        let bias: [f32; C] = std::array::from_fn(|i| self.w.bias[b.co0 + i]);
        let l = S::F32_LANES;
        // Vectors per strip, so that the C×V accumulators, V inputs and a broadcast fit the
        // registers: 32 for AVX-512 and NEON, 16 for eight-lane AVX2 (where blocks of 8 run
        // as two halves of 4, see `with_simd`).
        let v = match (C, l == 8) {
            (CO_WIDE, _) => 3,
            (CO, true) => 2,
            _ => 4,
        };
        let row = Row::<C> {
            // SAFETY: planes co0..co0+C, row y: this task's own region of the output.
            out: std::array::from_fn(|i| unsafe { self.out.ptr().add((b.co0 + i) * og.plane() + og.at(y, 0)) }),
            res: self
                .epi
                .residual
                .map(|r| std::array::from_fn(|i| &r.plane(b.co0 + i)[og.at(y, 0)..])),
        };
        let mut x = 0;
        // SAFETY (all strips): x + vectors·lanes ≤ w, and every input plane has a border of
        // at least K/2, so each load stays inside its row's plane (checked in `conv`).
        while x + v * l <= og.w {
            match v {
                1 => unsafe { self.strip::<S, K, C, W, 1>(s, wb, &bias, y, x, &row) },
                2 => unsafe { self.strip::<S, K, C, W, 2>(s, wb, &bias, y, x, &row) },
                3 => unsafe { self.strip::<S, K, C, W, 3>(s, wb, &bias, y, x, &row) },
                _ => unsafe { self.strip::<S, K, C, W, 4>(s, wb, &bias, y, x, &row) },
            }
            x += v * l;
        }
        while x + l <= og.w {
            unsafe { self.strip::<S, K, C, W, 1>(s, wb, &bias, y, x, &row) };
            x += l;
        }
        if x < og.w {
            self.tail::<S, K, C, W>(s, wb, &bias, y, x, og.w - x, &row);
        }
        if self.epi.sigmoid {
            for r in &row.out {
                // SAFETY: this task's row.
                let r = unsafe { std::slice::from_raw_parts_mut(*r, og.w) };
                r.iter_mut().for_each(|z| *z = sigmoid(*z));
            }
        }
    }

    /// `V` full vectors of output pixels starting at column `x`, for the block's `C` channels.
    ///
    /// # Safety
    /// `x + V·lanes ≤ w`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn strip<S: Simd, const K: usize, const C: usize, const W: usize, const V: usize>(
        &self,
        s: S,
        wb: &[f32],
        bias: &[f32; C],
        y: usize,
        x: usize,
        row: &Row<C>,
    ) {
        let l = S::F32_LANES;
        let mut acc: [[S::f32s; V]; C] = std::array::from_fn(|c| [s.splat_f32s(bias[c]); V]);
        let mut wi = 0;
        for (p, &off) in self.src.iter().zip(&self.row_off) {
            let d = p.g.pad - K / 2;
            let stride = p.g.stride();
            for c in 0..p.n {
                let plane = p.plane(c);
                for ky in 0..K {
                    let base = (y - off + ky + d) * stride + x + d;
                    for kx in 0..K {
                        let xs: [S::f32s; V] = std::array::from_fn(|v| unsafe { load::<S>(plane, base + kx + v * l) });
                        for (co, acc) in acc.iter_mut().enumerate() {
                            let wv = s.splat_f32s(unsafe { *wb.get_unchecked(wi + co) });
                            for v in 0..V {
                                acc[v] = s.mul_add_e_f32s(wv, xs[v], acc[v]);
                            }
                        }
                        wi += W;
                    }
                }
            }
        }
        for (co, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                let a = self.finish(s, a, row.res.map(|r| unsafe { load::<S>(r[co], x + v * l) }));
                unsafe { store::<S>(row.out[co].add(x + v * l), a) };
            }
        }
    }

    /// The last `n < lanes` pixels of a row, with partial loads and stores.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn tail<S: Simd, const K: usize, const C: usize, const W: usize>(
        &self,
        s: S,
        wb: &[f32],
        bias: &[f32; C],
        y: usize,
        x: usize,
        n: usize,
        row: &Row<C>,
    ) {
        let mut acc: [S::f32s; C] = std::array::from_fn(|c| s.splat_f32s(bias[c]));
        let mut wi = 0;
        for (p, &off) in self.src.iter().zip(&self.row_off) {
            let d = p.g.pad - K / 2;
            let stride = p.g.stride();
            for c in 0..p.n {
                let plane = p.plane(c);
                for ky in 0..K {
                    let base = (y - off + ky + d) * stride + x + d;
                    for kx in 0..K {
                        let xs = s.partial_load_f32s(&plane[base + kx..base + kx + n]);
                        for (co, acc) in acc.iter_mut().enumerate() {
                            *acc = s.mul_add_e_f32s(s.splat_f32s(wb[wi + co]), xs, *acc);
                        }
                        wi += W;
                    }
                }
            }
        }
        for (co, &a) in acc.iter().enumerate() {
            let a = self.finish(s, a, row.res.map(|r| s.partial_load_f32s(&r[co][x..x + n])));
            // SAFETY: n pixels of this task's row.
            let dst = unsafe { std::slice::from_raw_parts_mut(row.out[co].add(x), n) };
            s.partial_store_f32s(dst, a);
        }
    }

    #[inline(always)]
    fn finish<S: Simd>(&self, s: S, a: S::f32s, residual: Option<S::f32s>) -> S::f32s {
        let a = match residual {
            Some(r) => s.add_f32s(a, r),
            None => a,
        };
        if self.epi.relu {
            s.max_f32s(a, s.splat_f32s(0.0))
        } else {
            a
        }
    }
}

/// Adds to `acc[i·k + j]` the training kernel gradient's tap sums of one (output, input)
/// channel pair of one frame: `Σ_(y,x) g[y, x] · x_padded[y + i, x + j]`, with `g` an
/// unbordered (h, w) plane of the output gradient and `xp` the input plane with a zero
/// border of k/2 (geometry `ig`).
///
/// Vectorised along the row like the forward kernel: one load of `g` feeds k² FMAs into k²
/// accumulators (9 registers for 3×3), each row's sums go to f64 so long planes lose nothing.
pub fn tap_sums(isa: Isa, g: &[f32], xp: &[f32], ig: Geom, k: usize, acc: &mut [f64]) {
    assert!(ig.pad == k / 2 && g.len() == ig.h * ig.w && xp.len() == ig.plane() && acc.len() == k * k);
    match k {
        1 => isa.dispatch(TapSums::<1> { g, xp, ig, acc }),
        3 => isa.dispatch(TapSums::<3> { g, xp, ig, acc }),
        5 => isa.dispatch(TapSums::<5> { g, xp, ig, acc }),
        7 => isa.dispatch(TapSums::<7> { g, xp, ig, acc }),
        _ => panic!("no kernel-gradient kernel for k = {k}"),
    }
}

struct TapSums<'a, const K: usize> {
    g: &'a [f32],
    xp: &'a [f32],
    ig: Geom,
    acc: &'a mut [f64],
}

impl<const K: usize> WithSimd for TapSums<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (w, stride, l) = (self.ig.w, self.ig.stride(), S::F32_LANES);
        for (y, grow) in self.g.chunks_exact(w).enumerate() {
            let rows: [&[f32]; K] = std::array::from_fn(|i| &self.xp[(y + i) * stride..(y + i + 1) * stride]);
            // K × K accumulators, sized by K so that they live in registers: a fixed 49 (7×7)
            // for every K kept them on the stack and zeroed 3 KB per row.
            let mut v = [[s.splat_f32s(0.0); K]; K];
            let mut x0 = 0;
            while x0 + l <= w {
                // SAFETY: x0 + l ≤ w, and x0 + j + l ≤ w + K − 1 = stride for j < K.
                let gv = unsafe { load::<S>(grow, x0) };
                for (vi, row) in v.iter_mut().zip(&rows) {
                    for (j, acc) in vi.iter_mut().enumerate() {
                        let xv = unsafe { load::<S>(row, x0 + j) };
                        *acc = s.mul_add_e_f32s(gv, xv, *acc);
                    }
                }
                x0 += l;
            }
            for (i, (vi, row)) in v.iter().zip(&rows).enumerate() {
                for (j, &sum) in vi.iter().enumerate() {
                    let tail: f32 = (x0..w).map(|x| grow[x] * row[x + j]).sum();
                    self.acc[i * K + j] += (s.reduce_sum_f32s(sum) + tail) as f64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::resample::Taps;
    use super::*;

    /// The largest absolute difference between two outputs.
    fn max_err(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    }

    fn planes(data: &[f32], g: Geom, n: usize) -> Planes<'_> {
        Planes { data, g, n }
    }

    /// A deterministic pseudo-random plane set with zero borders.
    fn random_planes(g: Geom, n: usize, seed: u32) -> Vec<f32> {
        let mut v = vec![0.0; g.plane() * n];
        let mut s = seed;
        for c in 0..n {
            for y in 0..g.h {
                for x in 0..g.w {
                    s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                    v[c * g.plane() + g.at(y, x)] = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                }
            }
        }
        v
    }

    /// The kernel gradient's tap sums: equal to a plain f64 sum for every kernel size and a
    /// width with a vector tail, on every instruction set.
    #[test]
    fn tap_sums_equal_the_plain_sum_on_every_isa() {
        for k in [1, 3, 5, 7] {
            for w in [37, 16, 5] {
                let ig = Geom { h: 6, w, pad: k / 2 };
                let xp = random_planes(ig, 1, 4);
                let g: Vec<f32> = (0..6 * w).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
                let mut want = vec![0f64; k * k];
                for y in 0..6 {
                    for x in 0..w {
                        for (t, acc) in want.iter_mut().enumerate() {
                            let (i, j) = (t / k, t % k);
                            *acc += g[y * w + x] as f64 * xp[(y + i) * ig.stride() + x + j] as f64;
                        }
                    }
                }
                assert!(want.iter().any(|v| v.abs() > 1e-2));
                for isa in Isa::available() {
                    let mut got = vec![0f64; k * k];
                    tap_sums(isa, &g, &xp, ig, k, &mut got);
                    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
                    assert!(err < 1e-4, "{} k{k} w{w}: max err {err}", isa.name());
                }
            }
        }
    }

    /// Every instruction set gives the scalar path's result (up to FMA rounding) for every
    /// kernel size, a width with a vector tail, channel counts with a 1-channel remainder
    /// block, a two-part concatenated input, and each epilogue.
    #[test]
    fn every_isa_matches_scalar() {
        for k in [1, 3, 5, 7] {
            for (w, cout) in [(37, 6), (16, 4), (5, 1), (72, 9), (29, 12)] {
                let gi = Geom { h: 5, w, pad: 3 };
                let go = Geom { h: 5, w, pad: 1 };
                let (a, b) = (random_planes(gi, 3, 1), random_planes(gi, 2, 2));
                let res = random_planes(go, cout, 3);
                let oihw: Vec<f32> = (0..cout * 5 * k * k)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 80.0)
                    .collect();
                let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.1 - 0.2).collect();
                let wts = ConvWeights::new(&oihw, Some(&bias), cout, 5, k);
                let src = [planes(&a, gi, 3), planes(&b, gi, 2)];
                for (relu, sigmoid, residual) in [(false, false, false), (true, false, true), (false, true, false)] {
                    let epi = Epilogue {
                        residual: residual.then(|| planes(&res, go, cout)),
                        relu,
                        sigmoid,
                    };
                    let run = |isa: Isa, threads: usize| {
                        let pool = ThreadPool::new(threads).unwrap();
                        let mut out = vec![0.0; go.plane() * cout];
                        conv(isa, &pool, &src, &[], &mut Staging::default(), &wts, &mut out, go, &epi);
                        out
                    };
                    let reference = run(Isa::Scalar, 1);
                    // The border stays zero and the interior is not trivially zero.
                    assert!(reference[..go.stride()].iter().all(|&v| v == 0.0));
                    assert!(reference.iter().any(|&v| v.abs() > 1e-3));
                    for isa in Isa::available() {
                        let out = run(isa, 2);
                        let err = max_err(&out, &reference);
                        assert!(err < 1e-5, "{} k{k} w{w} cout{cout}: max err {err}", isa.name());
                    }
                }
            }
        }
    }

    /// Winograd F(2×2, 3×3) gives the direct kernel's result within float rounding, on every
    /// instruction set and thread count: channel counts with remainder blocks, a tile row
    /// longer than one chunk, a two-part input with one part up-sampled on the fly, each
    /// epilogue, the smallest 2×2 output, and after `repack` and `scale_inputs_from`.
    #[test]
    fn winograd_matches_the_direct_kernel() {
        for (h, w, cout) in [(6, 10, 16), (2, 2, 17), (4, 70, 29), (8, 130, 22)] {
            let g = Geom { h, w, pad: 1 };
            let gl = Geom {
                h: h.div_ceil(2),
                w: w.div_ceil(2),
                pad: 1,
            };
            let (full, low) = (random_planes(g, 9, 11), random_planes(gl, 12, 12));
            let (th, tw) = (Taps::new(gl.h, h), Taps::new(gl.w, w));
            let cin = 21;
            let oihw: Vec<f32> = (0..cout * cin * 9)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 80.0)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.1 - 0.4).collect();
            let res = random_planes(g, cout, 13);
            let direct = ConvWeights::new(&oihw, Some(&bias), cout, cin, 3);
            let mut wino = direct.clone();
            wino.use_winograd();
            assert!(wino.is_winograd() && wino.packed.is_empty());
            let run = |isa: Isa, threads: usize, wts: &ConvWeights, epi: &Epilogue| {
                let pool = ThreadPool::new(threads).unwrap();
                let mut staging = Staging::default();
                staging.ensure(threads, wts.scratch_floats(threads, g, 12));
                let src = [planes(&full, g, 9), planes(&low, gl, 12)];
                let up = [Upsampled {
                    part: 1,
                    th: &th,
                    tw: &tw,
                }];
                let mut out = vec![0.0; g.plane() * cout];
                conv(isa, &pool, &src, &up, &mut staging, wts, &mut out, g, epi);
                out
            };
            for (relu, sigmoid, residual) in [(false, false, false), (true, false, true), (false, true, false)] {
                let epi = Epilogue {
                    residual: residual.then(|| planes(&res, g, cout)),
                    relu,
                    sigmoid,
                };
                let reference = run(Isa::Scalar, 1, &direct, &epi);
                assert!(reference.iter().any(|&v| v.abs() > 0.5));
                for isa in Isa::available() {
                    for threads in [1, 3] {
                        let out = run(isa, threads, &wino, &epi);
                        let err = max_err(&out, &reference);
                        assert!(
                            err < 1e-4,
                            "{} {h}x{w} cout{cout} {threads}t: max err {err}",
                            isa.name()
                        );
                        // The border stays zero for the next layer's reads.
                        assert!(out[..g.stride()].iter().all(|&v| v == 0.0));
                    }
                }
            }
            // A gated copy and a regenerated kernel, as BLAM and DPConv change them per frame.
            let scale: Vec<f32> = (0..cin).map(|i| 0.5 + i as f32 / 30.0).collect();
            let (mut gated_direct, mut gated_wino) = (direct.clone(), wino.clone());
            gated_direct.scale_inputs_from(&direct, &scale);
            gated_wino.scale_inputs_from(&wino, &scale);
            let (mut regen_direct, mut regen_wino) = (direct.clone(), wino.clone());
            let theta = |o: usize, i: usize, t: usize| ((o * 7 + i * 3 + t) % 11) as f32 / 10.0 - 0.5;
            regen_direct.repack(theta);
            regen_wino.repack(theta);
            let epi = Epilogue::default();
            for (d, wg) in [(&gated_direct, &gated_wino), (&regen_direct, &regen_wino)] {
                let (a, b) = (run(Isa::Scalar, 1, d, &epi), run(Isa::best(), 2, wg, &epi));
                let err = max_err(&a, &b);
                assert!(err < 1e-4, "{h}x{w}: max err {err} after changing the kernel");
            }
            // Output planes without a border, as training's convolutions write them.
            let og = Geom { h, w, pad: 0 };
            let unbordered = |isa: Isa, wts: &ConvWeights| {
                let pool = ThreadPool::new(2).unwrap();
                let mut staging = Staging::default();
                staging.ensure(2, wts.scratch_floats(2, og, 0));
                let mut out = vec![0.0; og.plane() * cout];
                let src = [planes(&full, g, 9), planes(&full, g, 9), planes(&full, g, 3)];
                conv(isa, &pool, &src, &[], &mut staging, wts, &mut out, og, &epi);
                out
            };
            let err = max_err(&unbordered(Isa::Scalar, &direct), &unbordered(Isa::best(), &wino));
            assert!(err < 1e-4, "{h}x{w}: max err {err} into unbordered planes");
        }
    }

    /// A part read at half (or quarter) resolution and up-sampled band by band inside the
    /// convolution gives the same result as up-sampling it first (with the Candle path's
    /// align-corners formula) and convolving the full-resolution planes, for any thread count
    /// (the bands, and so the staged halos, differ) and for two staged parts at once.
    #[test]
    fn staged_upsampled_input_equals_upsampling_first() {
        for (h, w, factor) in [(16, 24, 2), (8, 40, 4), (32, 16, 2)] {
            let (lh, lw) = (h / factor, w / factor);
            let gl = Geom { h: lh, w: lw, pad: 1 };
            let gf = Geom { h, w, pad: 1 };
            let low = random_planes(gl, 3, 5);
            let low2 = random_planes(gl, 2, 6);
            let full = random_planes(gf, 2, 7);
            let (th, tw) = (Taps::new(lh, h), Taps::new(lw, w));
            // Up-sample explicitly into full-resolution planes.
            let explicit = |src: &[f32], n: usize| {
                let mut out = vec![0.0; gf.plane() * n];
                for c in 0..n {
                    for y in 0..h {
                        for x in 0..w {
                            let p = |yy: usize, xx: usize| src[c * gl.plane() + gl.at(yy, xx)];
                            let (fy, fx) = (th.frac[y], tw.frac[x]);
                            let a = (1.0 - fx) * p(th.lo[y], tw.lo[x]) + fx * p(th.lo[y], tw.hi[x]);
                            let b = (1.0 - fx) * p(th.hi[y], tw.lo[x]) + fx * p(th.hi[y], tw.hi[x]);
                            out[c * gf.plane() + gf.at(y, x)] = (1.0 - fy) * a + fy * b;
                        }
                    }
                }
                out
            };
            let (up1, up2) = (explicit(&low, 3), explicit(&low2, 2));
            let cin = 7;
            for k in [1, 3] {
                let oihw: Vec<f32> = (0..5 * cin * k * k)
                    .map(|i| ((i * 53 % 97) as f32 - 48.0) / 70.0)
                    .collect();
                let wts = ConvWeights::new(&oihw, None, 5, cin, k);
                let epi = Epilogue::default();
                let pool1 = ThreadPool::new(1).unwrap();
                let mut reference = vec![0.0; gf.plane() * 5];
                let src = [planes(&full, gf, 2), planes(&up1, gf, 3), planes(&up2, gf, 2)];
                conv(
                    Isa::Scalar,
                    &pool1,
                    &src,
                    &[],
                    &mut Staging::default(),
                    &wts,
                    &mut reference,
                    gf,
                    &epi,
                );
                for threads in [1, 2, 3] {
                    for isa in Isa::available() {
                        let pool = ThreadPool::new(threads).unwrap();
                        let mut staging = Staging::default();
                        staging.ensure(threads, staging_floats(threads, gf, 5));
                        let src = [planes(&full, gf, 2), planes(&low, gl, 3), planes(&low2, gl, 2)];
                        let up = [
                            Upsampled {
                                part: 1,
                                th: &th,
                                tw: &tw,
                            },
                            Upsampled {
                                part: 2,
                                th: &th,
                                tw: &tw,
                            },
                        ];
                        let mut out = vec![0.0; gf.plane() * 5];
                        conv(isa, &pool, &src, &up, &mut staging, &wts, &mut out, gf, &epi);
                        let err = max_err(&out, &reference);
                        assert!(
                            err < 1e-5,
                            "{h}x{w} ×{factor} k{k} {threads}t {}: max err {err}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}
