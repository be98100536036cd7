//! Activation storage: planar channels with a zero border, owned by the plan.
//!
//! Every buffer holds whole channel planes of one geometry (height, width, border). Kernels
//! write only plane interiors, so the borders stay zero for the buffer's life and a
//! "same" convolution reads its padding without a branch. Buffers are assigned at plan
//! build time by a small allocator that reuses a buffer once its value is dead, which is
//! what keeps a 640×512 lite plan small.

/// Shape of one channel plane: interior `h × w`, with `pad` zero rows and columns around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    /// Interior height.
    pub h: usize,
    /// Interior width.
    pub w: usize,
    /// Zero border on each side.
    pub pad: usize,
}

impl Geom {
    /// Floats from one row to the next.
    pub fn stride(self) -> usize {
        self.w + 2 * self.pad
    }

    /// Floats in one plane, border included.
    pub fn plane(self) -> usize {
        (self.h + 2 * self.pad) * self.stride()
    }

    /// Index of interior pixel (y, x) within a plane.
    pub fn at(self, y: usize, x: usize) -> usize {
        (y + self.pad) * self.stride() + x + self.pad
    }
}

/// Channels `ch .. ch + n` of buffer `buf`: the value of one tensor in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Act {
    /// Buffer index.
    pub buf: usize,
    /// First channel.
    pub ch: usize,
    /// Channels.
    pub n: usize,
}

/// A read-only view of some channel planes.
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    /// The planes, back to back.
    pub data: &'a [f32],
    /// Their geometry.
    pub g: Geom,
    /// How many.
    pub n: usize,
}

impl<'a> Planes<'a> {
    /// Plane `c`.
    pub fn plane(&self, c: usize) -> &'a [f32] {
        let p = self.g.plane();
        &self.data[c * p..(c + 1) * p]
    }
}

/// The input of a kernel that reads a channel concatenation: up to four parts, read in place
/// (the concatenation is never copied).
#[derive(Debug, Clone, Copy)]
pub struct Cat {
    /// The parts in order; only the first `len` are used.
    pub parts: [Act; 4],
    /// Parts used.
    pub len: usize,
}

impl Cat {
    /// A concatenation of `parts` (1 to 4).
    pub fn of(parts: &[Act]) -> Self {
        assert!((1..=4).contains(&parts.len()), "a concatenation has 1 to 4 parts");
        let mut p = [parts[0]; 4];
        p[..parts.len()].copy_from_slice(parts);
        Self {
            parts: p,
            len: parts.len(),
        }
    }

    /// Total channels.
    pub fn channels(&self) -> usize {
        self.parts[..self.len].iter().map(|a| a.n).sum()
    }

    /// The parts in use.
    pub fn parts(&self) -> &[Act] {
        &self.parts[..self.len]
    }
}

/// All activation buffers of a plan: one per geometry.
#[derive(Debug, Default)]
pub struct Buffers {
    data: Vec<Vec<f32>>,
    geoms: Vec<Geom>,
}

impl Buffers {
    /// Geometry of buffer `b`.
    pub fn geom(&self, b: usize) -> Geom {
        self.geoms[b]
    }

    /// A view of `a`.
    pub fn view(&self, a: Act) -> Planes<'_> {
        let g = self.geoms[a.buf];
        let p = g.plane();
        Planes {
            data: &self.data[a.buf][a.ch * p..(a.ch + a.n) * p],
            g,
            n: a.n,
        }
    }

    /// Runs `f` with `dst`'s planes writable and every other value readable through the
    /// [`Reader`]; reading planes that overlap `dst` is a plan-building bug and panics.
    pub fn write<R>(&mut self, dst: Act, f: impl FnOnce(&mut [f32], &Reader) -> R) -> R {
        let g = self.geoms[dst.buf];
        let p = g.plane();
        let (left, rest) = self.data.split_at_mut(dst.buf);
        let (mid, right) = rest.split_first_mut().expect("buffer index");
        let (before, rest) = mid.split_at_mut(dst.ch * p);
        let (out, after) = rest.split_at_mut(dst.n * p);
        let reader = Reader {
            left,
            right,
            buf: dst.buf,
            before,
            after,
            after_ch: dst.ch + dst.n,
            geoms: &self.geoms,
        };
        f(out, &reader)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.iter().map(|d| d.len() * 4).sum()
    }
}

/// Read access to every value but the one being written (see [`Buffers::write`]).
pub struct Reader<'a> {
    left: &'a [Vec<f32>],
    right: &'a [Vec<f32>],
    buf: usize,
    before: &'a [f32],
    after: &'a [f32],
    after_ch: usize,
    geoms: &'a [Geom],
}

impl Reader<'_> {
    /// A view of `a`.
    pub fn view(&self, a: Act) -> Planes<'_> {
        let g = self.geoms[a.buf];
        let p = g.plane();
        let data: &[f32] = match a.buf.cmp(&self.buf) {
            std::cmp::Ordering::Less => &self.left[a.buf][a.ch * p..(a.ch + a.n) * p],
            std::cmp::Ordering::Greater => &self.right[a.buf - self.buf - 1][a.ch * p..(a.ch + a.n) * p],
            std::cmp::Ordering::Equal if (a.ch + a.n) * p <= self.before.len() => {
                &self.before[a.ch * p..(a.ch + a.n) * p]
            }
            std::cmp::Ordering::Equal if a.ch >= self.after_ch => {
                let at = (a.ch - self.after_ch) * p;
                &self.after[at..at + a.n * p]
            }
            std::cmp::Ordering::Equal => panic!("a plan step reads the planes it writes"),
        };
        Planes { data, g, n: a.n }
    }

    /// Views of a concatenation's parts, on the stack.
    pub fn cat(&self, c: &Cat) -> ([Planes<'_>; 4], usize) {
        let v = |i: usize| self.view(c.parts[i.min(c.len - 1)]);
        ([v(0), v(1), v(2), v(3)], c.len)
    }
}

/// Build-time assignment of values to planes: one buffer per geometry, in which a value
/// takes the smallest run of free planes long enough (the buffer grows when none is); freeing
/// a value returns its planes. The buffer's size is the peak of the live values' planes
/// (plus fragmentation), not the sum of every value in the network.
#[derive(Debug, Default)]
pub struct Arena {
    geoms: Vec<Geom>,
    /// Per buffer: the planes in use, as sorted (start, len) runs.
    used: Vec<Vec<(usize, usize)>>,
    extent: Vec<usize>,
}

impl Arena {
    /// `n` planes of geometry `g`.
    pub fn alloc(&mut self, g: Geom, n: usize) -> Act {
        let buf = match self.geoms.iter().position(|&x| x == g) {
            Some(b) => b,
            None => {
                self.geoms.push(g);
                self.used.push(Vec::new());
                self.extent.push(0);
                self.geoms.len() - 1
            }
        };
        // Best fit: the smallest gap between values that holds n planes, else the end.
        let used = &mut self.used[buf];
        let mut best: Option<(usize, usize, usize)> = None; // (gap, start, insert index)
        let mut prev_end = 0;
        for (i, &(s, len)) in used.iter().enumerate() {
            let gap = s - prev_end;
            if gap >= n && best.is_none_or(|b| gap < b.0) {
                best = Some((gap, prev_end, i));
            }
            prev_end = s + len;
        }
        let (start, at) = best.map_or((prev_end, used.len()), |b| (b.1, b.2));
        used.insert(at, (start, n));
        self.extent[buf] = self.extent[buf].max(start + n);
        Act { buf, ch: start, n }
    }

    /// Returns `a`'s planes.
    pub fn free(&mut self, a: Act) {
        let used = &mut self.used[a.buf];
        if let Some(i) = used.iter().position(|&(s, _)| s == a.ch) {
            used.remove(i);
        }
    }

    /// Bytes the buffers will take.
    pub fn bytes(&self) -> usize {
        self.geoms
            .iter()
            .zip(&self.extent)
            .map(|(g, &n)| g.plane() * n * 4)
            .sum()
    }

    /// Allocates the zeroed buffers.
    pub fn into_buffers(self) -> Buffers {
        Buffers {
            data: self
                .geoms
                .iter()
                .zip(&self.extent)
                .map(|(g, &n)| vec![0.0; g.plane() * n])
                .collect(),
            geoms: self.geoms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_planes_are_reused_first_fit_and_the_buffer_is_the_peak() {
        let g = Geom { h: 4, w: 4, pad: 1 };
        let g2 = Geom { h: 2, w: 2, pad: 1 };
        let mut a = Arena::default();
        let x = a.alloc(g, 3);
        let y = a.alloc(g, 2);
        assert_eq!((x.ch, y.ch), (0, 3));
        a.free(x);
        let z = a.alloc(g, 2); // fits in x's old planes
        assert_eq!((z.buf, z.ch), (x.buf, 0));
        let big = a.alloc(g, 4); // does not fit in the 1-plane gap: goes after y
        assert_eq!(big.ch, 5);
        let other = a.alloc(g2, 1);
        assert_ne!(other.buf, x.buf);
        assert_eq!(a.bytes(), (36 * 9 + 16) * 4);
        let mut b = a.into_buffers();
        b.write(y, |out, r| {
            assert_eq!(out.len(), 2 * 36);
            assert_eq!(r.view(z).data.len(), 2 * 36);
            assert_eq!(r.view(big).data.len(), 4 * 36);
        });
    }

    #[test]
    #[should_panic(expected = "reads the planes it writes")]
    fn reading_the_planes_being_written_is_caught() {
        let g = Geom { h: 2, w: 2, pad: 0 };
        let mut a = Arena::default();
        let x = a.alloc(g, 2);
        let mut b = a.into_buffers();
        b.write(Act { n: 1, ..x }, |_, r| {
            r.view(x);
        });
    }
}
