//! Winograd F(2×2, 3×3) convolution for the plan's wide 3×3 layers.
//!
//! Why: the direct kernel (`conv`) spends 9 multiply-adds per (pixel, input, output channel)
//! and on the official model's 16–272-channel layers already runs at about 60 % of the FMA
//! peak, so only fewer operations can make it faster. F(2×2, 3×3) (Lavin & Gray, 2016) computes
//! each 2×2 output tile from a 4×4 input tile with 16 products per channel pair instead of 36:
//! the input tile is transformed to `V = Bᵀ d B`, the kernel to `U = G g Gᵀ` (once, when the
//! plan is built, or per frame for DPConv's generated kernel), and for each of the 16
//! positions ξ of the transformed tile the channel sum `M_ξ = U_ξ · V_ξ` is a small matrix
//! product (output channels × input channels × tiles) with contiguous operands, which the
//! kernel below runs as register-blocked FMAs. The output transform `Y = Aᵀ M A` then gives the
//! 2×2 outputs, with the bias, residual, ReLU or sigmoid applied as they are written.
//!
//! The transforms cost O(channels) per pixel against the product's O(channels²), so the plan
//! uses this kernel only from [`MIN_INPUTS`] input and [`MIN_OUTPUTS`] output channels, and
//! where the frame's sides at that level are even (a tile covers 2×2 outputs). Numerically, `G`'s halves and the
//! sums of up to four terms in each transform change results by a few float roundings: the
//! tests bound the difference to the direct kernel, and the plan's parity tests still hold the
//! reference fixtures' 1e-4 bound.
//!
//! Every function a task calls is `#[inline(always)]`, so that it is compiled (and its plain
//! loops auto-vectorised) with the task's instruction set.
//!
//! Work is split over tasks of [`CHUNK`] tiles in raster order (on narrow levels a task spans
//! several tile rows); each task transforms its input into per-thread scratch (for parts stored at a lower resolution,
//! the four rows a tile row reads are up-sampled there first), so nothing is allocated.

use super::super::buffers::{Geom, Planes};
use super::super::simd::{load, store, Isa};
use super::super::threads::{SharedOut, ThreadPool};
use super::staging::{RowPair, Staging, Upsampled};
use super::{sigmoid, Epilogue};
use pulp::{Simd, WithSimd};

/// Fewest input channels for which the plan uses Winograd instead of the direct kernel.
pub const MIN_INPUTS: usize = 16;

/// Fewest output channels for which the plan uses Winograd: with 16 (the official model's
/// full-resolution layers) the transforms and the up-sampling of the decoder's inputs cost
/// more than the products save, 0.7–0.96× the direct kernel's speed; from 64 (the next level)
/// it runs 1.5–2.2× faster (`srsnet bench --preset official --layers`, AVX2, README "Speed").
pub const MIN_OUTPUTS: usize = 32;

/// Tiles (of 2×2 outputs) one task computes along its tile row: a multiple of every
/// instruction set's strip width, and small enough that a transformed input position
/// (`cin × CHUNK` floats) stays in L1 for the wide layers.
pub const CHUNK: usize = 32;

/// Width of the staged input rows a task reads: two columns per tile plus a halo each side.
const ROW: usize = 2 * CHUNK + 2;

/// A 3×3 kernel in the Winograd domain: `U = G g Gᵀ` per (output, input) channel pair, stored
/// `[ξ][input channel][output channel]` so that a block of output channels reads consecutive
/// floats for one input channel.
#[derive(Debug, Clone)]
pub struct WinogradWeights {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    u: Vec<f32>,
}

impl WinogradWeights {
    /// Transforms `weight(out channel, in channel, tap)` (tap = 3·ky + kx).
    pub fn new(cout: usize, cin: usize, weight: impl Fn(usize, usize, usize) -> f32) -> Self {
        let mut w = Self {
            cin,
            cout,
            u: vec![0.0; 16 * cin * cout],
        };
        w.repack(weight);
        w
    }

    /// Rewrites the kernel from `weight(out channel, in channel, tap)`, allocating nothing.
    pub fn repack(&mut self, weight: impl Fn(usize, usize, usize) -> f32) {
        let (cin, cout) = (self.cin, self.cout);
        for o in 0..cout {
            for i in 0..cin {
                let g: [f32; 9] = std::array::from_fn(|t| weight(o, i, t));
                let u = transform_kernel(&g);
                for (xi, &v) in u.iter().enumerate() {
                    self.u[(xi * cin + i) * cout + o] = v;
                }
            }
        }
    }

    /// Copies `base` with input channel `i` scaled by `scale[i]` (channels past `scale.len()`
    /// unscaled): the transform is linear, so this is the gated kernel's transform.
    pub fn scale_inputs_from(&mut self, base: &WinogradWeights, scale: &[f32]) {
        let (cin, cout) = (self.cin, self.cout);
        for xi in 0..16 {
            for i in 0..cin {
                let s = scale.get(i).copied().unwrap_or(1.0);
                let at = (xi * cin + i) * cout;
                for (d, &w) in self.u[at..at + cout].iter_mut().zip(&base.u[at..at + cout]) {
                    *d = w * s;
                }
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.u.len() * 4
    }
}

/// `G g Gᵀ` for one 3×3 kernel `g` (row-major), as 16 values ξ = 4·i + j.
fn transform_kernel(g: &[f32; 9]) -> [f32; 16] {
    // G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]], applied to rows then to columns.
    let col = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let rows: [[f32; 4]; 3] = std::array::from_fn(|r| col(g[3 * r], g[3 * r + 1], g[3 * r + 2]));
    let mut u = [0.0; 16];
    for j in 0..4 {
        let t = col(rows[0][j], rows[1][j], rows[2][j]);
        for i in 0..4 {
            u[4 * i + j] = t[i];
        }
    }
    u
}

/// Whether the plan should run a `k`×`k`, `cin` → `cout` convolution with output geometry `og`
/// through Winograd.
pub fn suits(k: usize, cin: usize, cout: usize, og: Geom) -> bool {
    k == 3 && cin >= MIN_INPUTS && cout >= MIN_OUTPUTS && og.h.is_multiple_of(2) && og.w.is_multiple_of(2)
}

/// Scratch floats one thread needs for a `cin` → `cout` Winograd convolution.
pub fn scratch_floats(cin: usize, cout: usize) -> usize {
    16 * (cin + cout) * CHUNK + 4 * ROW + 4 * ROW + 2 * ROW
}

/// Convolves the concatenation `src` (its `up` parts up-sampled on the fly) with the 3×3
/// kernel `w` and `bias` into the planes of `out` (geometry `og`).
///
/// Every input plane other than the `up` parts must have the output's interior size and a
/// border of at least 1; `og`'s sides must be even (its border may be 0: only the interior is
/// written, which is how training calls it).
#[allow(clippy::too_many_arguments)]
pub fn winograd_conv(
    isa: Isa,
    pool: &ThreadPool,
    src: &[Planes],
    up: &[Upsampled],
    staging: &mut Staging,
    w: &WinogradWeights,
    bias: &[f32],
    out: &mut [f32],
    og: Geom,
    epi: &Epilogue,
) {
    let cin: usize = src.iter().map(|p| p.n).sum();
    assert_eq!(cin, w.cin, "convolution input channels");
    assert!(
        og.h.is_multiple_of(2) && og.w.is_multiple_of(2),
        "Winograd output geometry"
    );
    assert!(
        out.len() >= w.cout * og.plane() && bias.len() == w.cout,
        "convolution output buffer"
    );
    if let Some(r) = &epi.residual {
        assert!(r.g == og && r.n >= w.cout, "residual geometry");
    }
    for (i, p) in src.iter().enumerate() {
        let staged = up.iter().any(|u| u.part == i);
        assert!(
            staged || (p.g.h == og.h && p.g.w == og.w && p.g.pad >= 1),
            "convolution input geometry"
        );
    }
    let need = scratch_floats(cin, w.cout);
    let (per_thread, region) = staging.regions(pool.threads(), need);
    // Tiles in raster order, CHUNK per task: on a narrow level a task spans several tile
    // rows, so the weights it streams serve CHUNK tiles there too.
    let (per_row, tiles) = (og.w / 2, og.w / 2 * og.h / 2);
    let out = SharedOut(out.as_mut_ptr());
    pool.run_on_threads(tiles.div_ceil(CHUNK), &|task, thread| {
        let first = task * CHUNK;
        // SAFETY: thread `thread`'s own region of the staging buffer.
        let scratch = unsafe { std::slice::from_raw_parts_mut(region.ptr().add(thread * per_thread), need) };
        isa.dispatch(TileTask {
            isa,
            src,
            up,
            w,
            bias,
            epi,
            og,
            out,
            per_row,
            first,
            count: (tiles - first).min(CHUNK),
            scratch,
        });
    });
}

/// Tiles `first .. first + count` (raster order, `per_row` per tile row) of one convolution.
struct TileTask<'a> {
    /// The instruction set the task runs with, for the up-sampling it calls outside `Simd`.
    isa: Isa,
    src: &'a [Planes<'a>],
    up: &'a [Upsampled<'a>],
    w: &'a WinogradWeights,
    bias: &'a [f32],
    epi: &'a Epilogue<'a>,
    og: Geom,
    out: SharedOut,
    per_row: usize,
    first: usize,
    count: usize,
    scratch: &'a mut [f32],
}

/// The part of a task's tiles that lies in one tile row.
#[derive(Clone, Copy)]
struct Segment {
    /// Tile row (output rows 2·row and 2·row + 1).
    row: usize,
    /// First tile in the row.
    t0: usize,
    /// Tiles.
    n: usize,
    /// Column of the first tile in the task's scratch.
    at: usize,
}

impl WithSimd for TileTask<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let mut task = self;
        let (cin, cout) = (task.w.cin, task.w.cout);
        let scratch = std::mem::take(&mut task.scratch);
        let (v, rest) = scratch.split_at_mut(16 * cin * CHUNK);
        let (m, rest) = rest.split_at_mut(16 * cout * CHUNK);
        let (e, rest) = rest.split_at_mut(4 * ROW);
        let (staged, rest) = rest.split_at_mut(4 * ROW);
        task.transform_input(v, e, staged, rest);
        let l = S::F32_LANES;
        // Tiles rounded up to whole vectors: the extra lanes compute on stale scratch and are
        // never written out.
        let tiles = task.count.div_ceil(l) * l;
        for xi in 0..16 {
            let u = &task.w.u[xi * cin * cout..(xi + 1) * cin * cout];
            let vx = &v[xi * cin * CHUNK..(xi + 1) * cin * CHUNK];
            let mx = &mut m[xi * cout * CHUNK..(xi + 1) * cout * CHUNK];
            products(s, u, vx, mx, cin, cout, tiles);
        }
        task.transform_output(s, m);
    }
}

impl TileTask<'_> {
    /// The task's tiles, row by row.
    #[inline(always)]
    fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        let (end, mut g) = (self.first + self.count, self.first);
        std::iter::from_fn(move || {
            (g < end).then(|| {
                let (row, t0) = (g / self.per_row, g % self.per_row);
                let n = (self.per_row - t0).min(end - g);
                let seg = Segment {
                    row,
                    t0,
                    n,
                    at: g - self.first,
                };
                g += n;
                seg
            })
        })
    }

    /// `V = Bᵀ d B` of every input channel's tiles into `v` (`[ξ][channel][tile]`).
    #[inline(always)]
    fn transform_input(&self, v: &mut [f32], e: &mut [f32], staged: &mut [f32], scratch: &mut [f32]) {
        for seg in self.segments() {
            self.transform_segment(seg, v, e, staged, scratch);
        }
    }

    #[inline(always)]
    fn transform_segment(&self, seg: Segment, v: &mut [f32], e: &mut [f32], staged: &mut [f32], scratch: &mut [f32]) {
        let cin = self.w.cin;
        let width = 2 * seg.n + 2;
        // Input column of the tiles' first halo column, and the first of the four input rows.
        let (x0, r0) = (2 * seg.t0 as isize - 1, 2 * seg.row as isize - 1);
        let mut ci = 0;
        for (i, p) in self.src.iter().enumerate() {
            let up = self.up.iter().find(|u| u.part == i);
            for c in 0..p.n {
                let plane = p.plane(c);
                let rows: [&[f32]; 4] = match up {
                    Some(u) => {
                        up_rows(self.isa, plane, p.g, u, self.og, r0, x0, width, staged, scratch);
                        let staged: &[f32] = staged;
                        std::array::from_fn(|k| &staged[k * ROW..k * ROW + width])
                    }
                    None => std::array::from_fn(|k| {
                        let at = ((r0 + k as isize + p.g.pad as isize) * p.g.stride() as isize + x0 + p.g.pad as isize)
                            as usize;
                        &plane[at..at + width]
                    }),
                };
                vertical(rows, e, width);
                for i in 0..4 {
                    let rows = std::array::from_fn(|j| ((4 * i + j) * cin + ci) * CHUNK + seg.at);
                    horizontal(&e[i * ROW..i * ROW + width], v, rows, seg.n);
                }
                ci += 1;
            }
        }
    }

    /// `Y = Aᵀ M A` per output channel and tile, with the epilogue, into the output planes.
    #[inline(always)]
    fn transform_output<S: Simd>(&self, s: S, m: &[f32]) {
        let (cout, og, l) = (self.w.cout, self.og, S::F32_LANES);
        // The four outputs of each tile, [(0, 0), (0, 1), (1, 0), (1, 1)] × tile, then the two
        // output rows they interleave into.
        let mut y = [[0f32; CHUNK]; 4];
        let mut rows = [[0f32; 2 * CHUNK]; 2];
        for co in 0..cout {
            let mut t = 0;
            while t < self.count {
                // SAFETY: t + lanes ≤ the tiles rounded up to whole vectors ≤ CHUNK.
                let mv: [S::f32s; 16] = std::array::from_fn(|k| unsafe { load::<S>(m, (k * cout + co) * CHUNK + t) });
                let (add, sub) = (|a, b| s.add_f32s(a, b), |a, b| s.sub_f32s(a, b));
                // Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]] down the columns, then along the rows.
                let s0: [S::f32s; 4] = std::array::from_fn(|j| add(add(mv[j], mv[4 + j]), mv[8 + j]));
                let s1: [S::f32s; 4] = std::array::from_fn(|j| sub(sub(mv[4 + j], mv[8 + j]), mv[12 + j]));
                let ys = [
                    add(add(s0[0], s0[1]), s0[2]),
                    sub(sub(s0[1], s0[2]), s0[3]),
                    add(add(s1[0], s1[1]), s1[2]),
                    sub(sub(s1[1], s1[2]), s1[3]),
                ];
                for (dst, v) in y.iter_mut().zip(ys) {
                    // SAFETY: t + lanes ≤ CHUNK (see above).
                    unsafe { store::<S>(dst.as_mut_ptr().add(t), v) };
                }
                t += l;
            }
            for seg in self.segments() {
                let (cols, n) = (seg.at..seg.at + seg.n, 2 * seg.n);
                let [y00, y01, y10, y11] = &y;
                interleave(&y00[cols.clone()], &y01[cols.clone()], &mut rows[0][..n]);
                interleave(&y10[cols.clone()], &y11[cols], &mut rows[1][..n]);
                for (dy, row) in rows.iter().enumerate() {
                    let at = co * og.plane() + og.at(2 * seg.row + dy, 2 * seg.t0);
                    // SAFETY: 2·n pixels of output row 2·row + dy of plane co: this task's tiles.
                    let dst = unsafe { std::slice::from_raw_parts_mut(self.out.ptr().add(at), n) };
                    let res = self.epi.residual.map(|r| &r.data[at..at + n]);
                    finish(dst, &row[..n], self.bias[co], res, self.epi);
                }
            }
        }
    }
}

/// `out[2t] = a[t]`, `out[2t + 1] = b[t]`.
#[inline(always)]
fn interleave(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.chunks_exact_mut(2).zip(a).zip(b) {
        o[0] = x;
        o[1] = y;
    }
}

/// `dst = act(sum + bias + residual)`, one output row segment.
#[inline(always)]
fn finish(dst: &mut [f32], sum: &[f32], bias: f32, residual: Option<&[f32]>, epi: &Epilogue) {
    match residual {
        Some(r) => dst
            .iter_mut()
            .zip(sum)
            .zip(r)
            .for_each(|((d, &s), &r)| *d = s + bias + r),
        None => dst.iter_mut().zip(sum).for_each(|(d, &s)| *d = s + bias),
    }
    if epi.relu {
        dst.iter_mut().for_each(|d| *d = d.max(0.0));
    }
    if epi.sigmoid {
        dst.iter_mut().for_each(|d| *d = sigmoid(*d));
    }
}

/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]` down the columns of
/// the four input rows, into `e` (rows of [`ROW`] floats). Every slice is cut to `width`
/// first so that the loop has no bounds checks and vectorises.
#[inline(always)]
fn vertical(rows: [&[f32]; 4], e: &mut [f32], width: usize) {
    let (e0, rest) = e.split_at_mut(ROW);
    let (e1, rest) = rest.split_at_mut(ROW);
    let (e2, e3) = rest.split_at_mut(ROW);
    let (e0, e1, e2, e3) = (&mut e0[..width], &mut e1[..width], &mut e2[..width], &mut e3[..width]);
    let [d0, d1, d2, d3] = rows.map(|r| &r[..width]);
    for x in 0..width {
        e0[x] = d0[x] - d2[x];
        e1[x] = d1[x] + d2[x];
        e2[x] = d2[x] - d1[x];
        e3[x] = d1[x] - d3[x];
    }
}

/// The same transform along one row `e` of `vertical`'s output: tile `t` reads columns
/// `2t .. 2t + 4` and writes element `t` of the four rows of `v` that start at `at`. The four
/// destinations are cut as separate slices, so the compiler sees that they do not overlap and
/// vectorises the stride-2 reads.
#[inline(always)]
fn horizontal(e: &[f32], v: &mut [f32], at: [usize; 4], nt: usize) {
    debug_assert!(at.windows(2).all(|w| w[0] + nt <= w[1]) && e.len() >= 2 * nt + 2);
    let (head, rest) = v.split_at_mut(at[1]);
    let (v1, rest) = rest.split_at_mut(at[2] - at[1]);
    let (v2, v3) = rest.split_at_mut(at[3] - at[2]);
    let (v0, v1, v2, v3) = (
        &mut head[at[0]..at[0] + nt],
        &mut v1[..nt],
        &mut v2[..nt],
        &mut v3[..nt],
    );
    let e = &e[..2 * nt + 2];
    for t in 0..nt {
        let (a, b, c, d) = (e[2 * t], e[2 * t + 1], e[2 * t + 2], e[2 * t + 3]);
        v0[t] = a - c;
        v1[t] = b + c;
        v2[t] = c - b;
        v3[t] = b - d;
    }
}

/// Rows `r0 .. r0 + 4`, columns `x0 .. x0 + width` of the full-resolution image that the
/// low-resolution part `low` (geometry `g`) up-samples to (align-corners bilinear, the taps of
/// `u`), zero outside the image, into `staged` (rows of [`ROW`] floats).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn up_rows(
    isa: Isa,
    low: &[f32],
    g: Geom,
    u: &Upsampled,
    og: Geom,
    r0: isize,
    x0: isize,
    width: usize,
    staged: &mut [f32],
    scratch: &mut [f32],
) {
    let mut pair = RowPair::new(isa, low, g, u, og.w, &mut scratch[..2 * ROW]);
    for k in 0..4 {
        let row = &mut staged[k * ROW..k * ROW + width];
        match usize::try_from(r0 + k as isize) {
            Ok(r) if r < og.h => pair.row_into(r, x0, row),
            _ => row.fill(0.0),
        }
    }
}

/// `M_ξ = U_ξ · V_ξ` for one ξ: `u` is `[cin][cout]`, `v` `[cin][CHUNK]`, `m` `[cout][CHUNK]`,
/// over the first `tiles` columns (a whole number of vectors).
#[inline(always)]
fn products<S: Simd>(s: S, u: &[f32], v: &[f32], m: &mut [f32], cin: usize, cout: usize, tiles: usize) {
    // Output channels × vectors of tiles held in registers: 6 × 2 (12 accumulators) of AVX2's
    // 16, 8 × 2 of AVX-512's and NEON's 32, 4 × 4 scalar.
    let (block, wide) = match S::F32_LANES {
        1 => (4, 4),
        8 => (6, 2),
        _ => (8, 2),
    };
    let mut co = 0;
    while co < cout {
        let c = block.min(cout - co);
        let p = Panel {
            u,
            v,
            cin,
            cout,
            co,
            tiles,
            wide,
        };
        match c {
            1 => p.run::<S, 1>(s, m),
            2 => p.run::<S, 2>(s, m),
            3 => p.run::<S, 3>(s, m),
            4 => p.run::<S, 4>(s, m),
            5 => p.run::<S, 5>(s, m),
            6 => p.run::<S, 6>(s, m),
            7 => p.run::<S, 7>(s, m),
            _ => p.run::<S, 8>(s, m),
        }
        co += c;
    }
}

/// A block of output channels `co ..` of one ξ's product.
struct Panel<'a> {
    u: &'a [f32],
    v: &'a [f32],
    cin: usize,
    cout: usize,
    co: usize,
    tiles: usize,
    wide: usize,
}

impl Panel<'_> {
    #[inline(always)]
    fn run<S: Simd, const C: usize>(&self, s: S, m: &mut [f32]) {
        let l = S::F32_LANES;
        let mut t = 0;
        while t + self.wide * l <= self.tiles {
            match self.wide {
                2 => self.strip::<S, C, 2>(s, m, t),
                _ => self.strip::<S, C, 4>(s, m, t),
            }
            t += self.wide * l;
        }
        while t < self.tiles {
            self.strip::<S, C, 1>(s, m, t);
            t += l;
        }
    }

    /// Channels `co .. co + C` × tiles `t .. t + V·lanes`.
    #[inline(always)]
    fn strip<S: Simd, const C: usize, const V: usize>(&self, s: S, m: &mut [f32], t: usize) {
        let l = S::F32_LANES;
        assert!(t + V * l <= CHUNK && self.co + C <= self.cout);
        assert!(self.v.len() >= self.cin * CHUNK && self.u.len() >= self.cin * self.cout);
        assert!(m.len() >= self.cout * CHUNK);
        let mut acc = [[s.splat_f32s(0.0); V]; C];
        for ci in 0..self.cin {
            // SAFETY: ci < cin, t + V·lanes ≤ CHUNK and co + C ≤ cout (asserted above).
            let xs: [S::f32s; V] = std::array::from_fn(|j| unsafe { load::<S>(self.v, ci * CHUNK + t + j * l) });
            let w = ci * self.cout + self.co;
            for (c, acc) in acc.iter_mut().enumerate() {
                let wv = s.splat_f32s(unsafe { *self.u.get_unchecked(w + c) });
                for j in 0..V {
                    acc[j] = s.mul_add_e_f32s(wv, xs[j], acc[j]);
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            for (j, &a) in acc.iter().enumerate() {
                // SAFETY: inside row co + c of `m` (asserted above).
                unsafe { store::<S>(m.as_mut_ptr().add((self.co + c) * CHUNK + t + j * l), a) };
            }
        }
    }
}
