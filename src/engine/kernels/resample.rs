//! Resolution changes: 2×2 max pooling, align-corners bilinear up-sampling, pixel shuffle ×2.
//!
//! These are memory-bound gathers (each output reads a few inputs and does one or two
//! operations), so they are plain loops that the compiler vectorises where it can; explicit
//! SIMD would buy little. Each splits over channels × row bands on the pool.

use super::super::buffers::Planes;
use super::super::threads::{SharedOut, ThreadPool};
use super::attention::bands;

/// Source index and weight of each output coordinate of an align-corners linear resize:
/// source coordinate `i·(n_in − 1)/(n_out − 1)`, computed in f64 as the Candle path does.
#[derive(Debug, Clone)]
pub struct Taps {
    lo: Vec<usize>,
    hi: Vec<usize>,
    frac: Vec<f32>,
}

impl Taps {
    /// Taps from `n_in` to `n_out` samples.
    pub fn new(n_in: usize, n_out: usize) -> Self {
        let mut t = Self {
            lo: Vec::with_capacity(n_out),
            hi: Vec::with_capacity(n_out),
            frac: Vec::with_capacity(n_out),
        };
        for i in 0..n_out {
            let src = if n_out > 1 {
                i as f64 * (n_in - 1) as f64 / (n_out - 1) as f64
            } else {
                0.0
            };
            let lo = (src.floor() as usize).min(n_in - 1);
            t.lo.push(lo);
            t.hi.push((lo + 1).min(n_in - 1));
            t.frac.push((src - lo as f64) as f32);
        }
        t
    }
}

/// Output columns interpolated at once: two rows of this many floats live on the stack.
const CHUNK: usize = 1024;

/// Bilinear up-sampling of `x` into `out` (same planes, the output geometry `og`), along the
/// rows first and then the columns, as `A_h·X·A_wᵀ` in the Candle path.
///
/// Each source row is interpolated along x once per band and cached (output rows come in
/// runs that share their two source rows), so the gather runs about twice per source row
/// instead of twice per output row, and the blend between rows is a contiguous loop.
pub fn upsample(pool: &ThreadPool, x: Planes, th: &Taps, tw: &Taps, out: &mut [f32], og: super::super::buffers::Geom) {
    assert!(th.lo.len() == og.h && tw.lo.len() == og.w && out.len() >= x.n * og.plane());
    let g = x.g;
    let outp = SharedOut(out.as_mut_ptr());
    let bands = bands(pool, x.n, og.h);
    pool.run(x.n * bands.count, &|task| {
        let (c, b) = (task / bands.count, task % bands.count);
        let p = x.plane(c);
        let mut rows = [[0f32; CHUNK]; 2];
        for x0 in (0..og.w).step_by(CHUNK) {
            let n = CHUNK.min(og.w - x0);
            let mut cached = [usize::MAX; 2];
            for oy in bands.rows(b, og.h) {
                let (lo, hi, fy) = (th.lo[oy], th.hi[oy], th.frac[oy]);
                let (l, h, f) = (&tw.lo[x0..x0 + n], &tw.hi[x0..x0 + n], &tw.frac[x0..x0 + n]);
                let interp = |src: usize, dst: &mut [f32]| {
                    let r = &p[g.at(src, 0)..][..g.w];
                    for i in 0..n {
                        dst[i] = (1.0 - f[i]) * r[l[i]] + f[i] * r[h[i]];
                    }
                };
                if cached[0] != lo {
                    if cached[1] == lo {
                        rows.swap(0, 1);
                        cached.swap(0, 1);
                    } else {
                        interp(lo, &mut rows[0][..n]);
                        cached[0] = lo;
                    }
                }
                if cached[1] != hi {
                    if hi == lo {
                        let [a, b] = &mut rows;
                        b[..n].copy_from_slice(&a[..n]);
                    } else {
                        interp(hi, &mut rows[1][..n]);
                    }
                    cached[1] = hi;
                }
                // SAFETY: channel c, row oy, columns x0..x0+n: this task's region.
                let dst = unsafe { std::slice::from_raw_parts_mut(outp.ptr().add(c * og.plane() + og.at(oy, x0)), n) };
                for ((d, &a), &b) in dst.iter_mut().zip(&rows[0][..n]).zip(&rows[1][..n]) {
                    *d = (1.0 - fy) * a + fy * b;
                }
            }
        }
    });
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
