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
    let g = low.g;
    let w = gs.w;
    let (ra, rb) = scratch.split_at_mut(w);
    let (mut ra, mut rb) = (&mut ra[..w], &mut rb[..w]);
    for c in 0..low.n {
        let p = low.plane(c);
        let plane = &mut dst[c * gs.plane()..(c + 1) * gs.plane()];
        let mut cached = [usize::MAX; 2];
        for j in 0..gs.h + 2 {
            let row = &mut plane[j * gs.stride()..(j + 1) * gs.stride()];
            let r = (y0 + j).wrapping_sub(1);
            if r >= h {
                row.fill(0.0);
                continue;
            }
            let (lo, hi, fy) = (u.th.lo[r], u.th.hi[r], u.th.frac[r]);
            // Up-sampling ×2 moves the row pair by one source row every other output row:
            // the old upper row is the new lower one, so swap instead of interpolating it again
            // (the horizontal pass, a gather per pixel, was done twice per source row before).
            if cached[1] == lo && cached[0] != lo {
                std::mem::swap(&mut ra, &mut rb);
                cached.swap(0, 1);
            }
            for (slot, src) in [(0, lo), (1, hi)] {
                if cached[slot] != src {
                    let s = &p[g.at(src, 0)..][..g.w];
                    let d = if slot == 0 { &mut *ra } else { &mut *rb };
                    for (x, v) in d.iter_mut().enumerate() {
                        let (l, hh, f) = (u.tw.lo[x], u.tw.hi[x], u.tw.frac[x]);
                        *v = (1.0 - f) * s[l] + f * s[hh];
                    }
                    cached[slot] = src;
                }
            }
            row[0] = 0.0;
            row[w + 1] = 0.0;
            for ((o, &a), &b) in row[1..=w].iter_mut().zip(ra.iter()).zip(rb.iter()) {
                *o = (1.0 - fy) * a + fy * b;
            }
        }
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
