//! Per-thread staging of convolution inputs stored at a lower resolution: the rows a band of
//! output rows reads are up-sampled (align-corners bilinear) into the thread's scratch just
//! before the convolution reads them, so the full-resolution copy never exists. The same
//! per-thread scratch serves the Winograd kernel's transformed tiles.

use super::super::buffers::{Geom, Planes};
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
pub(super) fn stage_rows(
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
        let mut pair = RowPair::new(low.plane(c), low.g, u, w, scratch);
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
    pub(super) fn new(low: &'a [f32], g: Geom, u: &'a Upsampled<'a>, w: usize, scratch: &'a mut [f32]) -> Self {
        let (lo, hi) = scratch.split_at_mut(scratch.len() / 2);
        Self {
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
                interpolate_row(s, self.u, x0, self.w, &mut d[..n]);
                self.cached[slot] = src;
            }
        }
        for ((o, &a), &b) in dst.iter_mut().zip(self.lo.iter()).zip(self.hi.iter()) {
            *o = (1.0 - fy) * a + fy * b;
        }
    }
}

/// Columns `x0 .. x0 + dst.len()` of source row `s` up-sampled along x to `w` columns (the
/// column taps of `u`), zero outside `0..w`.
#[inline(always)]
fn interpolate_row(s: &[f32], u: &Upsampled, x0: isize, w: usize, dst: &mut [f32]) {
    let n = dst.len() as isize;
    let (start, end) = ((-x0).clamp(0, n) as usize, (w as isize - x0).clamp(0, n) as usize);
    dst[..start].fill(0.0);
    dst[end..].fill(0.0);
    for (j, d) in dst[start..end].iter_mut().enumerate() {
        let x = (x0 + (start + j) as isize) as usize;
        let (l, h, f) = (u.tw.lo[x], u.tw.hi[x], u.tw.frac[x]);
        *d = (1.0 - f) * s[l] + f * s[h];
    }
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
}
