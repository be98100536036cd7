//! Resolution changes: 2×2 max pooling, pixel shuffle ×2, and the taps of align-corners
//! bilinear up-sampling (which the convolutions apply to their inputs as they read them).
//!
//! These are memory-bound gathers (each output reads a few inputs and does one or two
//! operations), so they are plain loops that the compiler vectorises where it can; explicit
//! SIMD would buy little. Each splits over channels × row bands on the pool.

use super::super::buffers::Planes;
use super::super::threads::{SharedOut, ThreadPool};
use super::attention::bands;

/// Source indices and weight of each output coordinate of an align-corners linear resize.
/// `lo` and `hi` never decrease along the output (the vector gather relies on it).
#[derive(Debug, Clone)]
pub struct Taps {
    pub(crate) lo: Vec<usize>,
    pub(crate) hi: Vec<usize>,
    pub(crate) frac: Vec<f32>,
    /// `lo` and `hi` as `i32`, the lane type of the vector permutes that gather the taps
    /// (`staging::interpolate_row`).
    pub(crate) lo32: Vec<i32>,
    pub(crate) hi32: Vec<i32>,
}

impl Taps {
    /// Taps from `n_in` to `n_out` samples ([`align_corners_taps`]).
    pub fn new(n_in: usize, n_out: usize) -> Self {
        let mut t = Self {
            lo: Vec::with_capacity(n_out),
            hi: Vec::with_capacity(n_out),
            frac: Vec::with_capacity(n_out),
            lo32: Vec::new(),
            hi32: Vec::new(),
        };
        for (lo, hi, frac) in align_corners_taps(n_in, n_out) {
            t.lo.push(lo);
            t.hi.push(hi);
            t.frac.push(frac);
        }
        // A source index beyond i32 would need a plane of 2³¹ columns; saturating keeps such
        // taps off the vector path (its window test fails) instead of wrapping.
        t.lo32 = t.lo.iter().map(|&i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
        t.hi32 = t.hi.iter().map(|&i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
        t
    }
}

/// 2×2 max pooling, stride 2, of `x` into `out` (geometry `og`, half the size).
pub fn max_pool(pool: &ThreadPool, x: Planes, out: &mut [f32], og: super::super::buffers::Geom) {
    let g = x.g;
    assert!(og.h * 2 == g.h && og.w * 2 == g.w && out.len() >= x.n * og.plane());
    let outp = SharedOut(out.as_mut_ptr());
    let bands = bands(pool, x.n, og.h);
    pool.run(x.n * bands.count, &|task| {
        let (c, b) = (task / bands.count, task % bands.count);
        let p = x.plane(c);
        for y in bands.rows(b, og.h) {
            let (r0, r1) = (&p[g.at(2 * y, 0)..][..g.w], &p[g.at(2 * y + 1, 0)..][..g.w]);
            // SAFETY: channel c, row y: this task's region.
            let dst = unsafe { std::slice::from_raw_parts_mut(outp.ptr().add(c * og.plane() + og.at(y, 0)), og.w) };
            for (x, d) in dst.iter_mut().enumerate() {
                *d = r0[2 * x].max(r0[2 * x + 1]).max(r1[2 * x].max(r1[2 * x + 1]));
            }
        }
    });
}

/// PyTorch's `PixelShuffle(2)`: `out[c, 2h+i, 2w+j] = in[4c + 2i + j, h, w]`.
pub fn pixel_shuffle(pool: &ThreadPool, x: Planes, out: &mut [f32], og: super::super::buffers::Geom) {
    let g = x.g;
    let cout = x.n / 4;
    assert!(og.h == 2 * g.h && og.w == 2 * g.w && out.len() >= cout * og.plane());
    let outp = SharedOut(out.as_mut_ptr());
    let bands = bands(pool, cout, og.h);
    pool.run(cout * bands.count, &|task| {
        let (c, b) = (task / bands.count, task % bands.count);
        for oy in bands.rows(b, og.h) {
            let (h, i) = (oy / 2, oy % 2);
            let src0 = &x.plane(4 * c + 2 * i)[g.at(h, 0)..][..g.w];
            let src1 = &x.plane(4 * c + 2 * i + 1)[g.at(h, 0)..][..g.w];
            // SAFETY: channel c, row oy: this task's region.
            let dst = unsafe { std::slice::from_raw_parts_mut(outp.ptr().add(c * og.plane() + og.at(oy, 0)), og.w) };
            for (w, pair) in dst.chunks_exact_mut(2).enumerate() {
                pair[0] = src0[w];
                pair[1] = src1[w];
            }
        }
    });
}

/// Align-corners linear resampling from `n_in` to `n_out` samples: for each output index, its
/// two source indices and the weight of the second (source coordinate `i·(n_in − 1)/(n_out − 1)`,
/// in f64). The one definition both the Candle path (`model::layers`) and the CPU plan use; it lives here
/// so that the model's training convolutions can use the engine's kernels without a cycle.
pub fn align_corners_taps(n_in: usize, n_out: usize) -> impl Iterator<Item = (usize, usize, f32)> {
    (0..n_out).map(move |i| {
        let src = if n_out > 1 {
            i as f64 * (n_in - 1) as f64 / (n_out - 1) as f64
        } else {
            0.0
        };
        let lo = (src.floor() as usize).min(n_in - 1);
        (lo, (lo + 1).min(n_in - 1), (src - lo as f64) as f32)
    })
}
