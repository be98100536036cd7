//! Per-thread staging of convolution inputs stored at a lower resolution: the rows a band of
//! output rows reads are up-sampled (align-corners bilinear) into the thread's scratch just
//! before the convolution reads them, so the full-resolution copy never exists. The same
//! per-thread scratch serves the Winograd kernel's transformed tiles.

use super::super::buffers::{Geom, Planes};
use super::super::simd::Isa;
use super::super::threads::SharedOut;
use super::resample::Taps;

/// A part of a convolution's input that is stored at a lower resolution and up-sampled
/// (align-corners bilinear) on the fly: each task stages the rows its band needs (plus one
/// halo row each side) in its thread's scratch, so the full-resolution copy never exists.
#[derive(Debug, Clone, Copy)]
pub struct Upsampled<'a> {
    /// Which part of `src`.
    pub part: usize,
    /// Row taps (source rows → output rows).
    pub th: &'a Taps,
    /// Column taps.
    pub tw: &'a Taps,
}

/// Per-thread scratch for staged inputs, one region per pool thread.
#[derive(Debug, Default)]
pub struct Staging {
    data: Vec<f32>,
    per_thread: usize,
}

impl Staging {
    /// Makes room for `floats` per thread for `threads` threads (allocates only when it grows).
    pub fn ensure(&mut self, threads: usize, floats: usize) {
        let per_thread = self.per_thread.max(floats);
        if self.data.len() < threads * per_thread {
            self.data = vec![0.0; threads * per_thread];
        }
        self.per_thread = per_thread;
    }
}

impl Staging {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// The floats per thread and the start of thread 0's region, checking that each of
    /// `threads` regions holds `need` floats.
    pub(super) fn regions(&mut self, threads: usize, need: usize) -> (usize, SharedOut) {
        assert!(
            self.per_thread >= need && self.data.len() >= threads * self.per_thread,
            "staging size"
        );
        (self.per_thread, SharedOut(self.data.as_mut_ptr()))
    }
}

/// Bytes of up-sampled rows one band may stage: with bands of a quarter of a thread's rows, the
/// official model's 64 staged channels at 256² took 2.2 MB per band, written and read back
/// through L3; capped at 512 KiB (an L2) those layers ran 15–20 % faster, against 8–12 %
/// with 384 KiB (`srsnet bench --preset official --layers`, three alternating runs, AVX2).
const STAGE_BYTES: usize = 512 << 10;

/// How `conv` splits the `og.h` output rows over `threads`: (bands, rows per band). With
/// `up_channels` staged, bands are also cut so that their staged rows fit in L2.
pub fn conv_bands(threads: usize, og: Geom, up_channels: usize) -> (usize, usize) {
    let h = og.h.max(1);
    let bands = (4 * threads).clamp(1, h);
    let mut rows = h.div_ceil(bands);
    if up_channels > 0 {
        let per_row = up_channels * (og.w + 2) * 4;
        rows = rows.min((STAGE_BYTES / per_row).saturating_sub(2).max(1));
    }
    (h.div_ceil(rows), rows)
}

/// Staging floats one thread needs for `channels` up-sampled channels of output geometry `og`.
pub fn staging_floats(threads: usize, og: Geom, channels: usize) -> usize {
    if channels == 0 {
        return 0;
    }
    let (_, rows) = conv_bands(threads, og, channels);
    channels * (rows + 2) * (og.w + 2) + 2 * og.w
}

/// Up-samples rows `y0 − 1 ..= y0 + gs.h` of every channel of `low` into the staging planes
/// (geometry `gs`: the band plus a zero border; rows outside the image stay zero).
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_rows(
    isa: Isa,
    low: Planes,
    u: &Upsampled,
    y0: usize,
    h: usize,
    gs: Geom,
    dst: &mut [f32],
    scratch: &mut [f32],
) {
    let w = gs.w;
    for c in 0..low.n {
        let mut pair = RowPair::new(isa, low.plane(c), low.g, u, w, scratch);
        let plane = &mut dst[c * gs.plane()..(c + 1) * gs.plane()];
        for j in 0..gs.h + 2 {
            let row = &mut plane[j * gs.stride()..(j + 1) * gs.stride()];
            let r = (y0 + j).wrapping_sub(1);
            if r >= h {
                row.fill(0.0);
                continue;
            }
            row[0] = 0.0;
            row[w + 1] = 0.0;
            pair.row_into(r, 0, &mut row[1..=w]);
        }
    }
}

/// Rows of the up-sampled image of one low-resolution plane, computed from the two source
/// rows each reads, interpolated along x once and kept while the next output row needs them:
/// ×2 up-sampling moves the pair by one source row every other output row, so the old upper
/// row becomes the lower one instead of being interpolated again (that horizontal pass, a
/// gather per pixel, was done twice per source row before).
pub(super) struct RowPair<'a> {
    isa: Isa,
    low: &'a [f32],
    g: Geom,
    u: &'a Upsampled<'a>,
    /// Width of the up-sampled image: columns outside `0..w` are zero.
    w: usize,
    lo: &'a mut [f32],
    hi: &'a mut [f32],
    /// The source rows `lo` and `hi` hold.
    cached: [usize; 2],
}

impl<'a> RowPair<'a> {
    /// Up-sampling `low` (geometry `g`) to an image `w` wide, for row segments of at most
    /// `scratch.len() / 2` columns.
    #[inline(always)]
    pub(super) fn new(
        isa: Isa,
        low: &'a [f32],
        g: Geom,
        u: &'a Upsampled<'a>,
        w: usize,
        scratch: &'a mut [f32],
    ) -> Self {
        let (lo, hi) = scratch.split_at_mut(scratch.len() / 2);
        Self {
            isa,
            low,
            g,
            u,
            w,
            lo,
            hi,
            cached: [usize::MAX; 2],
        }
    }

    /// Columns `x0 .. x0 + dst.len()` of up-sampled row `r` into `dst`.
    #[inline(always)]
    pub(super) fn row_into(&mut self, r: usize, x0: isize, dst: &mut [f32]) {
        let (lo, hi, fy) = (self.u.th.lo[r], self.u.th.hi[r], self.u.th.frac[r]);
        if self.cached[1] == lo && self.cached[0] != lo {
            std::mem::swap(&mut self.lo, &mut self.hi);
            self.cached.swap(0, 1);
        }
        let n = dst.len();
        for (slot, src) in [(0, lo), (1, hi)] {
            if self.cached[slot] != src {
                let d = if slot == 0 { &mut *self.lo } else { &mut *self.hi };
                let s = &self.low[self.g.at(src, 0)..][..self.g.w];
                interpolate_row(self.isa, s, self.u.tw, x0, self.w, &mut d[..n]);
                self.cached[slot] = src;
            }
        }
        blend_rows(self.isa, &self.lo[..n], &self.hi[..n], fy, dst);
    }
}

/// Columns `x0 .. x0 + dst.len()` of source row `s` up-sampled along x to `w` columns (the
/// column taps `tw`), zero outside `0..w`.
#[inline(always)]
fn interpolate_row(isa: Isa, s: &[f32], tw: &Taps, x0: isize, w: usize, dst: &mut [f32]) {
    let n = dst.len() as isize;
    let (start, end) = ((-x0).clamp(0, n) as usize, (w as isize - x0).clamp(0, n) as usize);
    dst[..start].fill(0.0);
    dst[end..].fill(0.0);
    let (x, dst) = ((x0 + start as isize) as usize, &mut dst[start..end]);
    assert!(x + dst.len() <= tw.lo.len(), "column taps");
    match isa {
        // SAFETY: an `Avx2` or `Avx512` token exists only on a CPU with AVX2 (pulp checks when
        // it makes one); the taps cover the columns (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(_) | Isa::Avx512(_) => unsafe { interpolate_avx2(s, tw, x, dst) },
        _ => interpolate_scalar(s, tw, x, dst),
    }
}

/// Columns `x ..` of `s` interpolated along x, one at a time: each output gathers its two taps.
#[inline(always)]
fn interpolate_scalar(s: &[f32], tw: &Taps, x: usize, dst: &mut [f32]) {
    for (d, x) in dst.iter_mut().zip(x..) {
        let (l, h, f) = (tw.lo[x], tw.hi[x], tw.frac[x]);
        *d = (1.0 - f) * s[l] + f * s[h];
    }
}

/// [`interpolate_scalar`] 8 columns at a time. Up-sampling reads each source column for at
/// least one output, so 8 consecutive outputs tap at most 8 consecutive source columns (the taps
/// never decrease): one load of that window and two lane permutes gather all 16 taps, instead of
/// 16 scalar loads. A block whose taps do not fit one window (a source row under 8 columns)
/// takes the scalar path, as does the tail of the row. The same operations in the same order as
/// the scalar path: the results are equal to the bit.
///
/// # Safety
/// The CPU has AVX2; `x + dst.len() <= tw.lo.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interpolate_avx2(s: &[f32], tw: &Taps, x: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let one = _mm256_set1_ps(1.0);
    let mut j = 0;
    while j + 8 <= dst.len() {
        let at = x + j;
        // The window starts at the first tap, moved left where it would leave the row.
        let base = tw.lo[at].min(s.len().saturating_sub(8));
        if s.len() >= 8 && tw.hi[at + 7] < base + 8 {
            // SAFETY: `base + 8 <= s.len()`, and `at + 8 <= tw.lo.len()` (the caller's contract),
            // which `lo32`, `hi32` and `frac` share.
            unsafe {
                let b = _mm256_set1_epi32(base as i32);
                let lo = _mm256_sub_epi32(_mm256_loadu_si256(tw.lo32.as_ptr().add(at).cast()), b);
                let hi = _mm256_sub_epi32(_mm256_loadu_si256(tw.hi32.as_ptr().add(at).cast()), b);
                let window = _mm256_loadu_ps(s.as_ptr().add(base));
                let f = _mm256_loadu_ps(tw.frac.as_ptr().add(at));
                let a = _mm256_mul_ps(_mm256_sub_ps(one, f), _mm256_permutevar8x32_ps(window, lo));
                let v = _mm256_add_ps(a, _mm256_mul_ps(f, _mm256_permutevar8x32_ps(window, hi)));
                _mm256_storeu_ps(dst.as_mut_ptr().add(j), v);
            }
        } else {
            interpolate_scalar(s, tw, at, &mut dst[j..j + 8]);
        }
        j += 8;
    }
    interpolate_scalar(s, tw, x + j, &mut dst[j..]);
}

/// `dst = (1 − fy)·a + fy·b`: the vertical pass, between two horizontally interpolated rows.
#[inline(always)]
fn blend_rows(isa: Isa, a: &[f32], b: &[f32], fy: f32, dst: &mut [f32]) {
    assert!(a.len() == dst.len() && b.len() == dst.len(), "staged row lengths");
    match isa {
        // SAFETY: as in `interpolate_row`; the lengths are asserted above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(_) | Isa::Avx512(_) => unsafe { blend_avx2(a, b, fy, dst) },
        _ => blend_scalar(a, b, fy, dst),
    }
}

#[inline(always)]
fn blend_scalar(a: &[f32], b: &[f32], fy: f32, dst: &mut [f32]) {
    for ((o, &a), &b) in dst.iter_mut().zip(a).zip(b) {
        *o = (1.0 - fy) * a + fy * b;
    }
}

/// [`blend_scalar`] 8 lanes at a time, without FMA so that it rounds as the scalar path does
/// (the baseline x86-64 build would otherwise run it 4 lanes wide).
///
/// # Safety
/// The CPU has AVX2; `a`, `b` and `dst` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blend_avx2(a: &[f32], b: &[f32], fy: f32, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (wa, wb) = (_mm256_set1_ps(1.0 - fy), _mm256_set1_ps(fy));
    let mut j = 0;
    while j + 8 <= dst.len() {
        // SAFETY: `j + 8 <= len` for all three (the caller's contract).
        unsafe {
            let va = _mm256_mul_ps(wa, _mm256_loadu_ps(a.as_ptr().add(j)));
            let vb = _mm256_mul_ps(wb, _mm256_loadu_ps(b.as_ptr().add(j)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(j), _mm256_add_ps(va, vb));
        }
        j += 8;
    }
    blend_scalar(&a[j..], &b[j..], fy, &mut dst[j..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bands cover every row; with many staged channels they shrink so that a band's staged
    /// rows fit in `STAGE_BYTES` (the official model's 64 up-sampled channels at 256²).
    #[test]
    fn staged_bands_fit_the_stage_budget() {
        let g = Geom { h: 256, w: 256, pad: 1 };
        assert_eq!(conv_bands(2, g, 0), (8, 32));
        let (bands, rows) = conv_bands(2, g, 64);
        assert!(bands * rows >= 256 && (bands - 1) * rows < 256);
        assert!(64 * (rows + 2) * 258 * 4 <= STAGE_BYTES && rows < 32, "{rows} rows");
        // One huge row still gets a band of one row.
        assert_eq!(
            conv_bands(
                1,
                Geom {
                    h: 4,
                    w: 100_000,
                    pad: 1
                },
                64
            )
            .1,
            1
        );
    }

    /// Every instruction set's horizontal and vertical passes equal the scalar ones to the bit,
    /// for ×2 and ×4, rows shorter than a vector (the scalar fallback), windows cut at either
    /// end of the row (the winograd kernel's halo columns start at −1), and each checked
    /// against the align-corners formula itself.
    #[test]
    fn vector_interpolation_equals_scalar_to_the_bit() {
        for (n_in, n_out) in [
            (1, 4),
            (3, 6),
            (5, 20),
            (8, 16),
            (12, 24),
            (37, 74),
            (40, 160),
            (128, 256),
        ] {
            let tw = Taps::new(n_in, n_out);
            let s: Vec<f32> = (0..n_in).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
            for (x0, len) in [(0, n_out), (-1, n_out + 2), (3, 13), (-1, 9), (n_out as isize - 5, 9)] {
                let mut want = vec![f32::NAN; len];
                interpolate_row(Isa::Scalar, &s, &tw, x0, n_out, &mut want);
                for (j, &v) in want.iter().enumerate() {
                    let x = x0 + j as isize;
                    let truth = if (0..n_out as isize).contains(&x) {
                        let x = x as usize;
                        (1.0 - tw.frac[x]) * s[tw.lo[x]] + tw.frac[x] * s[tw.hi[x]]
                    } else {
                        0.0
                    };
                    assert_eq!(v, truth, "{n_in}→{n_out} column {x}");
                }
                let b: Vec<f32> = want.iter().map(|v| v * 0.5 - 1.0).collect();
                let mut want_blend = vec![0.0; len];
                blend_rows(Isa::Scalar, &want, &b, 0.3, &mut want_blend);
                for isa in Isa::available() {
                    let mut got = vec![f32::NAN; len];
                    interpolate_row(isa, &s, &tw, x0, n_out, &mut got);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{n_in}→{n_out} x0 {x0} {}", isa.name());
                    let mut blend = vec![0.0; len];
                    blend_rows(isa, &want, &b, 0.3, &mut blend);
                    assert_eq!(bits(&blend), bits(&want_blend), "blend {} {}", len, isa.name());
                }
            }
        }
    }
}
