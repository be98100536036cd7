//! The attention passes of a Res-CBAM block and of DPConv's info branch, each one pass over
//! the feature map:
//!
//! 1. [`channel_stats`]: per channel mean and max (CBAM channel attention's pooling, ECA's max);
//! 2. [`spatial_pool`]: per pixel mean and max over channels of `x·s_c` (spatial attention's
//!    input, with the channel gate applied on the fly instead of materialised);
//! 3. the 7×7 2→1 convolution with a fused sigmoid (the convolution kernel);
//! 4. [`gate_residual`]: `relu(x·s_c·a + residual)`, the block's output in one write;
//!
//! and [`gated_mean`], DPConv's `GAP(y·a)`, without materialising `y·a`.

use super::super::buffers::{Geom, Planes};
use super::super::simd::{load, store, Isa};
use super::super::threads::{SharedOut, ThreadPool};
use pulp::{Simd, WithSimd};

/// Per channel mean and max of the interiors of `x`'s planes into `mean` and `max`.
pub fn channel_stats(isa: Isa, pool: &ThreadPool, x: Planes, mean: &mut [f32], max: &mut [f32]) {
    assert!(mean.len() >= x.n && max.len() >= x.n);
    let (mp, xp) = (SharedOut(mean.as_mut_ptr()), SharedOut(max.as_mut_ptr()));
    pool.run(x.n, &|c| {
        let (m, mx) = isa.dispatch(Stats {
            plane: x.plane(c),
            g: x.g,
        });
        // SAFETY: each task writes only its own channel's entry.
        unsafe {
            *mp.ptr().add(c) = m;
            *xp.ptr().add(c) = mx;
        }
    });
}

struct Stats<'a> {
    plane: &'a [f32],
    g: Geom,
}

impl WithSimd for Stats<'_> {
    type Output = (f32, f32);

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> (f32, f32) {
        let l = S::F32_LANES;
        let mut sum = s.splat_f32s(0.0);
        let mut mx = s.splat_f32s(f32::NEG_INFINITY);
        let (mut tail_sum, mut tail_max) = (0f32, f32::NEG_INFINITY);
        for y in 0..self.g.h {
            let row = &self.plane[self.g.at(y, 0)..self.g.at(y, 0) + self.g.w];
            let mut x = 0;
            while x + l <= row.len() {
                // SAFETY: x + l ≤ row length.
                let v = unsafe { load::<S>(row, x) };
                sum = s.add_f32s(sum, v);
                mx = s.max_f32s(mx, v);
                x += l;
            }
            for &v in &row[x..] {
                tail_sum += v;
                tail_max = tail_max.max(v);
            }
        }
        let n = (self.g.h * self.g.w) as f32;
        (
            (s.reduce_sum_f32s(sum) + tail_sum) / n,
            s.reduce_max_f32s(mx).max(tail_max),
        )
    }
}

/// CBAM channel attention from pooled statistics: `sigmoid(fc2·relu(fc1·avg) + fc2·relu(fc1·max))`.
/// `fc1` is (h, c), `fc2` (c, h), row-major; `hidden` holds 2h floats of scratch.
pub fn channel_gate(avg: &[f32], max: &[f32], fc1: &[f32], fc2: &[f32], hidden: &mut [f32], out: &mut [f32]) {
    let c = avg.len();
    let h = fc1.len() / c;
    let (ha, hm) = hidden.split_at_mut(h);
    for j in 0..h {
        let w = &fc1[j * c..(j + 1) * c];
        ha[j] = dot(w, avg).max(0.0);
        hm[j] = dot(w, &max[..c]).max(0.0);
    }
    for (i, o) in out[..c].iter_mut().enumerate() {
        let w = &fc2[i * h..(i + 1) * h];
        *o = super::sigmoid(dot(w, ha) + dot(w, hm));
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Per pixel `[mean_c(x·s_c), max_c(x·s_c)]` into the two planes of `out` (geometry `og`).
pub fn spatial_pool(isa: Isa, pool: &ThreadPool, x: Planes, scale: &[f32], out: &mut [f32], og: Geom) {
    assert!(og.h == x.g.h && og.w == x.g.w && out.len() >= 2 * og.plane() && scale.len() >= x.n);
    let outp = SharedOut(out.as_mut_ptr());
    let bands = bands(pool, 1, og.h);
    pool.run(bands.count, &|b| {
        for y in bands.rows(b, og.h) {
            isa.dispatch(SpatialPoolRow {
                x,
                scale,
                y,
                out: outp,
                og,
            });
        }
    });
}

struct SpatialPoolRow<'a> {
    x: Planes<'a>,
    scale: &'a [f32],
    y: usize,
    out: SharedOut,
    og: Geom,
}

impl WithSimd for SpatialPoolRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::F32_LANES;
        let (x, g, og) = (self.x, self.x.g, self.og);
        let inv = 1.0 / x.n as f32;
        // SAFETY: row y of both output planes belongs to this task.
        let mean = unsafe { std::slice::from_raw_parts_mut(self.out.ptr().add(og.at(self.y, 0)), og.w) };
        let max = unsafe { std::slice::from_raw_parts_mut(self.out.ptr().add(og.plane() + og.at(self.y, 0)), og.w) };
        let at = g.at(self.y, 0);
        let mut i = 0;
        while i < g.w {
            let n = l.min(g.w - i);
            let mut sum = s.splat_f32s(0.0);
            let mut mx = s.splat_f32s(f32::NEG_INFINITY);
            for c in 0..x.n {
                let p = &x.plane(c)[at + i..at + i + n];
                let v = s.mul_f32s(s.partial_load_f32s(p), s.splat_f32s(self.scale[c]));
                sum = s.add_f32s(sum, v);
                mx = s.max_f32s(mx, v);
            }
            s.partial_store_f32s(&mut mean[i..i + n], s.mul_f32s(sum, s.splat_f32s(inv)));
            s.partial_store_f32s(&mut max[i..i + n], mx);
            i += n;
        }
    }
}

/// `x[c] ← relu(x[c]·s_c·a + residual[c])` in place (all interiors of `n` planes of geometry
/// `g`; `a` one plane). In place because each pixel is read and then written by one task,
/// which saves the block a third full-resolution buffer.
#[allow(clippy::too_many_arguments)]
pub fn gate_residual(
    isa: Isa,
    pool: &ThreadPool,
    x: &mut [f32],
    g: Geom,
    n: usize,
    scale: &[f32],
    a: Planes,
    residual: &[Planes],
) {
    assert!(a.g.h == g.h && a.g.w == g.w && x.len() >= n * g.plane());
    assert_eq!(residual.iter().map(|p| p.n).sum::<usize>(), n, "residual channels");
    let xp = SharedOut(x.as_mut_ptr());
    let bands = bands(pool, n, g.h);
    pool.run(n * bands.count, &|task| {
        let (c, b) = (task / bands.count, task % bands.count);
        let (res, rc) = plane_of(residual, c);
        for y in bands.rows(b, g.h) {
            isa.dispatch(GateRow {
                a: &a.plane(0)[a.g.at(y, 0)..a.g.at(y, 0) + g.w],
                res: &res.plane(rc)[res.g.at(y, 0)..res.g.at(y, 0) + g.w],
                scale: scale[c],
                // SAFETY: channel c, row y: this task's region.
                x: unsafe { xp.ptr().add(c * g.plane() + g.at(y, 0)) },
            });
        }
    });
}

/// The part of a concatenation holding channel `c`, and `c`'s index within it.
pub fn plane_of<'a>(parts: &[Planes<'a>], mut c: usize) -> (Planes<'a>, usize) {
    for p in parts {
        if c < p.n {
            return (*p, c);
        }
        c -= p.n;
    }
    panic!("channel beyond the concatenation");
}

struct GateRow<'a> {
    a: &'a [f32],
    res: &'a [f32],
    scale: f32,
    x: *mut f32,
}

impl WithSimd for GateRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::F32_LANES;
        let w = self.a.len();
        // SAFETY: the task's row of w pixels, read and written only by this task.
        let x = unsafe { std::slice::from_raw_parts_mut(self.x, w) };
        let sc = s.splat_f32s(self.scale);
        let zero = s.splat_f32s(0.0);
        let f = |x, a, r| s.max_f32s(s.mul_add_e_f32s(s.mul_f32s(x, sc), a, r), zero);
        let mut i = 0;
        while i + l <= w {
            // SAFETY: i + l ≤ w for the three rows.
            unsafe {
                let v = f(load::<S>(x, i), load::<S>(self.a, i), load::<S>(self.res, i));
                store::<S>(x.as_mut_ptr().add(i), v);
            }
            i += l;
        }
        if i < w {
            let p = |r: &[f32]| s.partial_load_f32s(&r[i..]);
            let v = f(p(x), p(self.a), p(self.res));
            s.partial_store_f32s(&mut x[i..], v);
        }
    }
}

/// Per channel mean over pixels of `x[c]·a` (`a` one plane), into `out`.
pub fn gated_mean(x: Planes, a: Planes, out: &mut [f32]) {
    let g = x.g;
    let n = (g.h * g.w) as f32;
    for (c, o) in out[..x.n].iter_mut().enumerate() {
        let p = x.plane(c);
        let mut sum = 0f64;
        for y in 0..g.h {
            let xr = &p[g.at(y, 0)..g.at(y, 0) + g.w];
            let ar = &a.plane(0)[a.g.at(y, 0)..a.g.at(y, 0) + g.w];
            sum += xr.iter().zip(ar).map(|(x, a)| x * a).sum::<f32>() as f64;
        }
        *o = (sum / n as f64) as f32;
    }
}

/// A split of `h` rows into bands so that `planes × bands` tasks keep every thread busy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bands {
    pub count: usize,
    per: usize,
}

impl Bands {
    pub fn rows(self, b: usize, h: usize) -> std::ops::Range<usize> {
        b * self.per..((b + 1) * self.per).min(h)
    }
}

pub(crate) fn bands(pool: &ThreadPool, planes: usize, h: usize) -> Bands {
    let want = (4 * pool.threads()).div_ceil(planes.max(1)).clamp(1, h.max(1));
    let per = h.max(1).div_ceil(want);
    Bands {
        count: h.max(1).div_ceil(per),
        per,
    }
}
