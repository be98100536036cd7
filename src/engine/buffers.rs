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
        Self { parts: p, len: parts.len() }
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

/// All activation buffers of a plan.
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

    /// Views of a concatenation's parts, on the stack.
    pub fn cat(&self, c: &Cat) -> ([Planes<'_>; 4], usize) {
        let v = |i: usize| self.view(c.parts[i.min(c.len - 1)]);
        ([v(0), v(1), v(2), v(3)], c.len)
    }

    /// Takes buffer `b` out so it can be written while others are read; give it back with [`Buffers::put`].
    pub fn take(&mut self, b: usize) -> Vec<f32> {
        std::mem::take(&mut self.data[b])
    }

    /// Returns a buffer taken with [`Buffers::take`].
    pub fn put(&mut self, b: usize, data: Vec<f32>) {
        self.data[b] = data;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.iter().map(|d| d.capacity() * 4).sum()
    }
}

/// Build-time assignment of values to buffers: a value gets a free buffer of its geometry
/// (grown if needed) or a new one; freeing a value makes its buffer reusable.
#[derive(Debug, Default)]
pub struct Arena {
    geoms: Vec<Geom>,
    channels: Vec<usize>,
    free: Vec<bool>,
}

impl Arena {
    /// A buffer for `n` channels of geometry `g`.
    pub fn alloc(&mut self, g: Geom, n: usize) -> Act {
        let reuse = (0..self.geoms.len())
            .filter(|&b| self.free[b] && self.geoms[b] == g)
            .max_by_key(|&b| self.channels[b].min(n) * 1_000_000 - self.channels[b].saturating_sub(n));
        let buf = match reuse {
            Some(b) => {
                self.channels[b] = self.channels[b].max(n);
                self.free[b] = false;
                b
            }
            None => {
                self.geoms.push(g);
                self.channels.push(n);
                self.free.push(false);
                self.geoms.len() - 1
            }
        };
        Act { buf, ch: 0, n }
    }

    /// Marks `a`'s buffer reusable.
    pub fn free(&mut self, a: Act) {
        self.free[a.buf] = true;
    }

    /// Bytes the buffers will take.
    pub fn bytes(&self) -> usize {
        self.geoms.iter().zip(&self.channels).map(|(g, &n)| g.plane() * n * 4).sum()
    }

    /// Allocates the zeroed buffers.
    pub fn into_buffers(self) -> Buffers {
        Buffers {
            data: self
                .geoms
                .iter()
                .zip(&self.channels)
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
    fn a_freed_buffer_is_reused_for_the_same_geometry_only() {
        let g = Geom { h: 4, w: 4, pad: 1 };
        let g2 = Geom { h: 2, w: 2, pad: 1 };
        let mut a = Arena::default();
        let x = a.alloc(g, 3);
        a.free(x);
        let y = a.alloc(g2, 3);
        assert_ne!(x.buf, y.buf);
        let z = a.alloc(g, 5);
        assert_eq!(z.buf, x.buf);
        assert_eq!(a.bytes(), (36 * 5 + 16 * 3) * 4);
        let b = a.into_buffers();
        assert_eq!(b.view(z).data.len(), 36 * 5);
    }
}
