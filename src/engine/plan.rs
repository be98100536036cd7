//! The inference plan: R's encoder and S for one input size, as a fixed list of fused steps
//! over buffers assigned once. Built from the BatchNorm-folded network; running a frame
//! allocates nothing.

use super::buffers::{Act, Arena, Buffers, Cat, Geom};
use super::kernels::attention::{channel_gate, channel_stats, gate_residual, gated_mean, spatial_pool};
use super::kernels::conv::{conv, conv_many, ConvJob, ConvWeights};
use super::kernels::resample::{max_pool, pixel_shuffle, Taps};
use super::kernels::sigmoid;
use super::kernels::staging::{Staging, Upsampled};
use super::kernels::winograd;
use super::kernels::Epilogue;
use super::simd::Isa;
use super::threads::ThreadPool;
use crate::model::attention::{ChannelAttention, SpatialAttention};
use crate::model::block::{Layer, ResCbamBlock};
use crate::model::fusion::{Blam, Spu};
use crate::model::layers::{Conv2d, ConvBn};
use crate::model::unet::{Decoder, Encoder};
use crate::model::Srsnet;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::time::Instant;

/// Largest activation memory one plan may take (4 GiB); beyond it a frame size is refused
/// with an error, not attempted. A 640×512 lite plan takes about 100 MiB.
pub const PLAN_MEMORY_LIMIT: usize = 4 << 30;

/// One step of the plan, named after the layer it computes (`S.conv0_1.0`, `R.stem`, …).
#[derive(Debug)]
struct Step {
    name: String,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Conv(Box<ConvOp>),
    Block(Box<BlockOp>),
    Pool { src: Act, dst: Act },
    PixelShuffle { src: Act, dst: Act },
    Blam(Box<BlamOp>),
    DpConv(Box<DpOp>),
}

#[derive(Debug)]
struct ConvOp {
    src: Cat,
    w: ConvWeights,
    dst: Act,
    epi: Epilogue<'static>,
}

/// Channel attention's weights and its per-frame scratch.
#[derive(Debug)]
struct ChannelGate {
    fc1: Vec<f32>,
    fc2: Vec<f32>,
    avg: Vec<f32>,
    max: Vec<f32>,
    hidden: Vec<f32>,
    scale: Vec<f32>,
}

/// Spatial attention's 7×7 convolution and its buffers: the 2-plane pooled map and the gate.
#[derive(Debug)]
struct SpatialGate {
    conv: ConvWeights,
    pooled: Act,
    gate: Act,
}

/// A part of a block's input read at a lower resolution and up-sampled inside the
/// convolutions that read it (see `kernels::staging::Upsampled`).
#[derive(Debug)]
struct UpTaps {
    part: usize,
    th: Taps,
    tw: Taps,
}

/// A Res-CBAM block: `relu(t·CA(t)·SA(t·CA(t)) + shortcut(x))`, `t = BN2(conv2(relu(BN1(conv1 x))))`.
#[derive(Debug)]
struct BlockOp {
    src: Cat,
    /// Parts of `src` up-sampled on the fly by conv1 and the shortcut.
    ups: Vec<UpTaps>,
    conv1: ConvWeights,
    conv2: ConvWeights,
    /// The 1×1 projection when the width changes; it writes into `t1`, dead by then.
    shortcut: Option<ConvWeights>,
    ca: ChannelGate,
    sa: SpatialGate,
    t1: Act,
    /// The shortcut's output when it is computed with conv1 (blocks whose input is staged:
    /// the planes right after `t1`); otherwise the shortcut reuses `t1` once conv2 has read it.
    res: Option<Act>,
    /// conv2's output, gated in place into the block's output.
    t2: Act,
}

/// BLAM with ECA folded into the fusion convolution's weights (one scale per input channel).
#[derive(Debug)]
struct BlamOp {
    low: Act,
    high: Act,
    bottom_up: [ConvWeights; 2],
    eca: [f32; 3],
    fuse_base: ConvWeights,
    fuse: ConvWeights,
    a: [Act; 2],
    dst: Act,
    avg: Vec<f32>,
    max: Vec<f32>,
    gate: Vec<f32>,
}

/// DPConv: the info branch on R's `x3_0`, the kernel generated into `conv`'s packed layout,
/// the convolution, and the residual add into S's `x3_0`.
#[derive(Debug)]
struct DpOp {
    pre: Act,
    y: Act,
    ca: ChannelGate,
    sa: SpatialGate,
    info_w: Vec<f32>,
    info_b: Vec<f32>,
    gen_w: Vec<f32>,
    gen_b: Vec<f32>,
    group: usize,
    conv: ConvWeights,
    out: Act,
    dst: Act,
    gap: Vec<f32>,
    p: Vec<f32>,
}

/// A built plan for one input size.
#[derive(Debug)]
pub struct Plan {
    /// Input height and width.
    pub size: (usize, usize),
    /// Input channels.
    pub channels: usize,
    isa: Isa,
    steps: Vec<Step>,
    bufs: Buffers,
    input: Act,
    logits: Act,
    recon_x3: Act,
    dpconv_out: Act,
    weight_bytes: usize,
    /// Per-thread rows of up-sampled inputs, sized on the first frame with a given pool.
    staging: Staging,
}

impl Plan {
    /// Builds the plan of `model` for `h × w` frames, running its kernels with `isa`.
    pub fn build(model: &Srsnet, h: usize, w: usize, isa: Isa) -> Result<Self> {
        Self::build_within(model, h, w, isa, PLAN_MEMORY_LIMIT)
    }

    /// As [`Plan::build`], refusing a plan whose buffers would take more than `limit` bytes.
    pub fn build_within(model: &Srsnet, h: usize, w: usize, isa: Isa, limit: usize) -> Result<Self> {
        check_size(h, w)?;
        let mut b = Builder {
            arena: Arena::default(),
            steps: Vec::new(),
            h,
            w,
        };
        let cin = model.config.seg_in_channels();
        let input = b.alloc(0, cin);
        // R reads the image planes only; a motion model's last plane is S's alone.
        let image = Act {
            n: model.config.in_channels,
            ..input
        };
        let r = b.encoder(&model.recon_encoder, image, "R", false)?;
        let s = b.encoder(&model.seg.encoder, input, "S", true)?;
        // The input planes may hold other values once both stems have read them; the next
        // frame's input is written when every value of this one is dead.
        b.arena.free(input);
        let (x3, dpconv_out) = b.dpconv(model, s[3], r[3])?;
        let logits = b.decoder(&model.seg.decoder, [s[0], s[1], s[2], x3])?;
        let bytes = b.arena.bytes();
        if bytes > limit {
            bail!(
                "frame {w}×{h}: the inference plan's buffers would take {} MiB, over the limit of {} MiB",
                bytes >> 20,
                limit >> 20
            );
        }
        let weight_bytes = b.steps.iter().map(|s| s.op.weight_bytes()).sum();
        Ok(Self {
            size: (h, w),
            channels: cin,
            isa,
            steps: b.steps,
            bufs: b.arena.into_buffers(),
            input,
            logits,
            recon_x3: r[3],
            dpconv_out,
            weight_bytes,
            staging: Staging::default(),
        })
    }

    /// Bytes of activation buffers and of packed weights the plan holds.
    pub fn memory(&self) -> (usize, usize) {
        (self.bufs.bytes() + self.staging.bytes(), self.weight_bytes)
    }

    /// The steps' names, in order.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }

    /// Runs one frame: `input` is (channels, h, w) row-major, `logits` receives (h, w).
    pub fn run(&mut self, pool: &ThreadPool, input: &[f32], logits: &mut [f32]) -> Result<()> {
        self.run_timed(pool, input, logits, None)
    }

    /// As [`Plan::run`], adding each step's wall time in seconds to `times[step]`.
    pub fn run_timed(
        &mut self,
        pool: &ThreadPool,
        input: &[f32],
        logits: &mut [f32],
        mut times: Option<&mut [f64]>,
    ) -> Result<()> {
        let (h, w) = self.size;
        if input.len() != self.channels * h * w || logits.len() != h * w {
            bail!(
                "plan for {}×{}×{h}×{w}: got {} input and {} output values",
                self.channels,
                h * w,
                input.len(),
                logits.len()
            );
        }
        self.write_input(input);
        let need = self.staging_need(pool.threads());
        self.staging.ensure(pool.threads(), need);
        for (i, step) in self.steps.iter_mut().enumerate() {
            let start = Instant::now();
            step.op.run(self.isa, pool, &mut self.bufs, &mut self.staging);
            if let Some(t) = times.as_deref_mut() {
                t[i] += start.elapsed().as_secs_f64();
            }
        }
        self.read_interior(self.logits, logits);
        Ok(())
    }

    /// Staging floats per thread the plan's steps need with `threads` threads.
    fn staging_need(&self, threads: usize) -> usize {
        let need = |s: &Step| s.op.staging_need(threads, &self.bufs);
        self.steps.iter().map(need).max().unwrap_or(0)
    }

    fn write_input(&mut self, input: &[f32]) {
        let (h, w) = self.size;
        let g = self.bufs.geom(self.input.buf);
        let channels = self.channels;
        self.bufs.write(self.input, |data, _| {
            for c in 0..channels {
                for y in 0..h {
                    let at = c * g.plane() + g.at(y, 0);
                    data[at..at + w].copy_from_slice(&input[(c * h + y) * w..][..w]);
                }
            }
        });
    }

    fn read_interior(&self, a: Act, out: &mut [f32]) {
        let v = self.bufs.view(a);
        let g = v.g;
        for c in 0..a.n {
            for y in 0..g.h {
                out[(c * g.h + y) * g.w..][..g.w].copy_from_slice(&v.plane(c)[g.at(y, 0)..][..g.w]);
            }
        }
    }

    /// R's `x3_0` and DPConv's output (before the residual add) of the last frame, as
    /// (channels, h/8, w/8) row-major: what the parity fixtures check besides the logits.
    pub fn trace(&self) -> (Vec<f32>, Vec<f32>) {
        let read = |a: Act| {
            let g = self.bufs.geom(a.buf);
            let mut v = vec![0.0; a.n * g.h * g.w];
            self.read_interior(a, &mut v);
            v
        };
        (read(self.recon_x3), read(self.dpconv_out))
    }
}

/// Refuses sizes the network cannot take, before anything is allocated.
pub fn check_size(h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 || !h.is_multiple_of(8) || !w.is_multiple_of(8) {
        bail!(
            "frame {w}×{h}: the network needs a width and height that are non-zero multiples of 8 (three 2×2 poolings)"
        );
    }
    crate::limits::check_frame_size("network input", w, h)?;
    Ok(())
}

struct Builder {
    arena: Arena,
    steps: Vec<Step>,
    h: usize,
    w: usize,
}

fn floats(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

fn conv_weights(c: &Conv2d) -> Result<ConvWeights> {
    let (cout, cin, k, k2) = c.weight.dims4()?;
    if k != k2 || !matches!(k, 1 | 3 | 5 | 7) || c.dilation != 1 || c.padding != k / 2 {
        bail!(
            "the CPU plan has no kernel for a {k}×{k2} convolution with dilation {}",
            c.dilation
        );
    }
    let bias = c.bias.as_ref().map(floats).transpose()?;
    Ok(ConvWeights::new(&floats(&c.weight)?, bias.as_deref(), cout, cin, k))
}

fn folded(c: &ConvBn) -> Result<ConvWeights> {
    conv_weights(&c.folded()?.conv)
}

fn channel_gate_of(ca: &ChannelAttention, c: usize) -> Result<ChannelGate> {
    let fc1 = floats(&ca.fc1)?;
    let h = fc1.len() / c;
    Ok(ChannelGate {
        fc1,
        fc2: floats(&ca.fc2)?,
        avg: vec![0.0; c],
        max: vec![0.0; c],
        hidden: vec![0.0; 2 * h],
        scale: vec![0.0; c],
    })
}

impl Builder {
    fn geom(&self, level: usize, pad: usize) -> Geom {
        Geom {
            h: self.h >> level,
            w: self.w >> level,
            pad,
        }
    }

    fn alloc(&mut self, level: usize, n: usize) -> Act {
        let g = self.geom(level, 1);
        self.arena.alloc(g, n)
    }

    fn push(&mut self, name: impl Into<String>, op: Op) {
        self.steps.push(Step { name: name.into(), op });
    }

    fn spatial_gate(&mut self, sa: &SpatialAttention, level: usize) -> Result<SpatialGate> {
        let (pg, gg) = (self.geom(level, 3), self.geom(level, 0));
        Ok(SpatialGate {
            conv: conv_weights(&sa.conv)?,
            pooled: self.arena.alloc(pg, 2),
            gate: self.arena.alloc(gg, 1),
        })
    }

    fn free_gate(&mut self, g: &SpatialGate) {
        self.arena.free(g.pooled);
        self.arena.free(g.gate);
    }

    /// `w`, moved into the Winograd domain where that kernel suits it at `level`.
    fn fit(&self, mut w: ConvWeights, level: usize) -> ConvWeights {
        if winograd::suits(w.k, w.cin, w.cout, self.geom(level, 1)) {
            w.use_winograd();
        }
        w
    }

    fn conv(&mut self, name: String, c: ConvWeights, src: Cat, level: usize, epi: Epilogue<'static>) -> Act {
        let c = self.fit(c, level);
        let dst = self.alloc(level, c.cout);
        self.push(name, Op::Conv(Box::new(ConvOp { src, w: c, dst, epi })));
        dst
    }

    fn pool(&mut self, name: String, src: Act, level: usize) -> Act {
        let dst = self.alloc(level + 1, src.n);
        self.push(name, Op::Pool { src, dst });
        dst
    }

    /// Taps up-sampling part `part` of a concatenation from level `from` to level `to`.
    fn up_taps(&self, part: usize, from: usize, to: usize) -> UpTaps {
        let (a, b) = (self.geom(from, 1), self.geom(to, 1));
        UpTaps {
            part,
            th: Taps::new(a.h, b.h),
            tw: Taps::new(a.w, b.w),
        }
    }

    fn block(&mut self, blk: &ResCbamBlock, src: Cat, ups: Vec<UpTaps>, level: usize, name: String) -> Result<Act> {
        let conv1 = self.fit(folded(&blk.conv1)?, level);
        let cout = conv1.cout;
        let shortcut = match &blk.shortcut {
            Some(s) => Some(folded(s)?),
            None if src.len > 1 || src.channels() != cout || !ups.is_empty() => {
                bail!("{name}: identity shortcut needs one input of {cout} channels")
            }
            None => None,
        };
        let (t1, res) = if shortcut.is_some() && !ups.is_empty() {
            let pair = self.alloc(level, 2 * cout);
            let res = Act {
                ch: pair.ch + cout,
                n: cout,
                ..pair
            };
            (Act { n: cout, ..pair }, Some(res))
        } else {
            (self.alloc(level, cout), None)
        };
        let t2 = self.alloc(level, cout);
        let sa = self.spatial_gate(&blk.sa, level)?;
        let op = BlockOp {
            src,
            ups,
            conv1,
            conv2: self.fit(folded(&blk.conv2)?, level),
            ca: channel_gate_of(&blk.ca, cout)?,
            shortcut,
            sa,
            t1,
            res,
            t2,
        };
        self.arena.free(t1); // with `res`, when they were allocated together
        self.free_gate(&op.sa);
        self.push(name, Op::Block(Box::new(op)));
        Ok(t2)
    }

    fn layer(&mut self, l: &Layer, src: Cat, level: usize, name: &str) -> Result<Act> {
        self.layer_up(l, src, Vec::new(), level, name)
    }

    /// A layer whose first block reads the `ups` parts of `src` up-sampled on the fly.
    fn layer_up(&mut self, l: &Layer, src: Cat, ups: Vec<UpTaps>, level: usize, name: &str) -> Result<Act> {
        let mut input = src;
        let mut ups = Some(ups);
        let mut prev: Option<Act> = None;
        for (i, blk) in l.blocks.iter().enumerate() {
            let out = self.block(blk, input, ups.take().unwrap_or_default(), level, format!("{name}.{i}"))?;
            if let Some(p) = prev {
                self.arena.free(p);
            }
            prev = Some(out);
            input = Cat::of(&[out]);
        }
        prev.context("a layer without blocks")
    }

    /// Stem and the four encoder levels; with `keep` false only `x3_0` stays allocated.
    fn encoder(&mut self, e: &Encoder, input: Act, net: &str, keep: bool) -> Result<[Act; 4]> {
        let s = self.conv(format!("{net}.stem"), folded(&e.stem)?, Cat::of(&[input]), 0, RELU);
        let mut x = [s; 4];
        let mut src = s; // the level's input: the stem's output, then each pooled feature
        for (level, layer) in e.levels.iter().enumerate() {
            x[level] = self.layer(layer, Cat::of(&[src]), level, &format!("{net}.conv{level}_0"))?;
            self.arena.free(src);
            if level < 3 {
                src = self.pool(format!("{net}.pool{level}"), x[level], level);
                if !keep {
                    self.arena.free(x[level]);
                }
            }
        }
        Ok(x)
    }

    /// DPConv on S's `x3_0` with R's `x3_0`; returns (`x3_0 + DPConv`, DPConv's output).
    fn dpconv(&mut self, model: &Srsnet, pre: Act, y: Act) -> Result<(Act, Act)> {
        let d = model.seg.dpconv();
        let (n, z, k) = (d.channels, y.n, d.kernel);
        if !matches!(k, 1 | 3 | 5 | 7) {
            bail!("the CPU plan has no kernel for a {k}×{k} DPConv");
        }
        let zeros = vec![0.0; n * n * k * k];
        let op = DpOp {
            pre,
            y,
            ca: channel_gate_of(&d.ca, z)?,
            sa: self.spatial_gate(&d.sa, 3)?,
            info_w: floats(&d.info_weight)?,
            info_b: floats(&d.info_bias)?,
            gen_w: floats(&d.gen_weight)?,
            gen_b: floats(&d.gen_bias)?,
            group: n * n * k * k / z,
            conv: self.fit(ConvWeights::new(&zeros, None, n, n, k), 3),
            out: self.alloc(3, n),
            dst: self.alloc(3, n),
            gap: vec![0.0; z],
            p: vec![0.0; z],
        };
        self.free_gate(&op.sa);
        // R's x3_0 and DPConv's output are never freed: `Plan::trace` reads them after the
        // frame (they are 1/8-size, so this costs little).
        self.arena.free(pre);
        let (dst, out) = (op.dst, op.out);
        self.push("S.dpconv", Op::DpConv(Box::new(op)));
        Ok((dst, out))
    }

    fn spu(&mut self, s: &Spu, src: Act, level: usize, name: String) -> Result<Act> {
        let w = self.fit(folded(&s.conv)?, level - 1);
        // The output first, so the short-lived shuffled planes sit above it and leave no hole.
        let dst = self.alloc(level - 1, w.cout);
        let ps = self.alloc(level - 1, src.n / 4);
        self.push(format!("{name}.shuffle"), Op::PixelShuffle { src, dst: ps });
        let op = ConvOp {
            src: Cat::of(&[ps]),
            w,
            dst,
            epi: RELU,
        };
        self.push(name, Op::Conv(Box::new(op)));
        self.arena.free(ps);
        Ok(dst)
    }

    fn blam(&mut self, m: &Blam, low: Act, high: Act, level: usize, name: String) -> Result<Act> {
        let c = low.n;
        let eca = floats(&m.eca.conv)?;
        let fuse = self.fit(folded(&m.fuse)?, level);
        let mut op = BlamOp {
            low,
            high,
            bottom_up: [
                self.fit(folded(&m.bottom_up1)?, level),
                self.fit(folded(&m.bottom_up2)?, level),
            ],
            eca: [eca[0], eca[1], eca[2]],
            fuse: fuse.clone(),
            fuse_base: fuse,
            a: [self.alloc(level, c), self.alloc(level, c)],
            dst: Act { buf: 0, ch: 0, n: 0 },
            avg: vec![0.0; c],
            max: vec![0.0; c],
            gate: vec![0.0; c],
        };
        // The fusion output goes into the first bottom-up buffer, dead once the second is computed.
        op.dst = op.a[0];
        self.arena.free(op.a[1]);
        let dst = op.dst;
        self.push(name, Op::Blam(Box::new(op)));
        Ok(dst)
    }

    /// The dense decoder, the fusion path, `finalconv` and the head, in the reference's order.
    fn decoder(&mut self, d: &Decoder, x: [Act; 4]) -> Result<Act> {
        let [x0_0, x1_0, x2_0, x3_0] = x;
        // Every dense node's second input is the next level's feature up-sampled ×2; the
        // convolutions read it at its own resolution and interpolate rows as they go.
        let x0_1 = self.layer_up(
            &d.conv0_1,
            Cat::of(&[x0_0, x1_0]),
            vec![self.up_taps(1, 1, 0)],
            0,
            "S.conv0_1",
        )?;

        let p = self.pool("S.conv1_1.pool".into(), x0_1, 0);
        let ups = vec![self.up_taps(1, 2, 1)];
        let x1_1 = self.layer_up(&d.conv1_1, Cat::of(&[x1_0, x2_0, p]), ups, 1, "S.conv1_1")?;
        self.arena.free(p);

        let p = self.pool("S.conv2_1.pool".into(), x1_1, 1);
        let ups = vec![self.up_taps(1, 3, 2)];
        let x2_1 = self.layer_up(&d.conv2_1, Cat::of(&[x2_0, x3_0, p]), ups, 2, "S.conv2_1")?;
        self.arena.free(p);
        self.arena.free(x2_0);

        let ups = vec![self.up_taps(1, 1, 0)];
        let x0_2 = self.layer_up(&d.conv0_2, Cat::of(&[x0_1, x1_1, x0_0]), ups, 0, "S.conv0_2")?;
        self.arena.free(x0_0);

        let p = self.pool("S.conv1_2.pool".into(), x0_2, 0);
        let ups = vec![self.up_taps(1, 2, 1)];
        let x1_2 = self.layer_up(&d.conv1_2, Cat::of(&[x1_1, x2_1, x1_0, p]), ups, 1, "S.conv1_2")?;
        for a in [p, x1_1, x1_0] {
            self.arena.free(a);
        }

        let ups = vec![self.up_taps(1, 1, 0)];
        let x0_3 = self.layer_up(&d.conv0_3, Cat::of(&[x0_2, x1_2, x0_1]), ups, 0, "S.conv0_3")?;
        for a in [x0_2, x0_1] {
            self.arena.free(a);
        }

        let h3 = self.spu(&d.fup[2], x3_0, 3, "S.fup3".into())?;
        let f3 = self.blam(&d.blam[2], x2_1, h3, 2, "S.blam3".into())?;
        self.arena.free(h3);
        self.arena.free(x2_1);
        let h2 = self.spu(&d.fup[1], f3, 2, "S.fup2".into())?;
        let f2 = self.blam(&d.blam[1], x1_2, h2, 1, "S.blam2".into())?;
        self.arena.free(h2);
        self.arena.free(x1_2);
        let h1 = self.spu(&d.fup[0], f2, 1, "S.fup1".into())?;
        let f1 = self.blam(&d.blam[0], x0_3, h1, 0, "S.blam1".into())?;
        self.arena.free(h1);
        self.arena.free(x0_3);

        let s2 = self.conv(
            "S.conv0_1_1x1".into(),
            conv_weights(&d.side[0])?,
            Cat::of(&[f2]),
            1,
            LINEAR,
        );
        let s3 = self.conv(
            "S.conv0_2_1x1".into(),
            conv_weights(&d.side[1])?,
            Cat::of(&[f3]),
            2,
            LINEAR,
        );
        self.arena.free(f2);
        self.arena.free(f3);
        let ups = vec![self.up_taps(1, 1, 0), self.up_taps(2, 2, 0)];
        let fused = self.layer_up(&d.finalconv, Cat::of(&[f1, s2, s3]), ups, 0, "S.finalconv")?;
        for a in [f1, s2, s3] {
            self.arena.free(a);
        }
        let logits = self.conv("S.head".into(), conv_weights(&d.head)?, Cat::of(&[fused]), 0, LINEAR);
        self.arena.free(fused);
        Ok(logits)
    }
}

impl Op {
    /// Staging floats per thread its convolutions need (up-sampled rows, Winograd scratch).
    fn staging_need(&self, threads: usize, bufs: &Buffers) -> usize {
        let need = |w: &ConvWeights, a: Act| w.scratch_floats(threads, bufs.geom(a.buf), 0);
        match self {
            Op::Conv(c) => need(&c.w, c.dst),
            Op::Block(b) => b.staging_need(threads, bufs),
            Op::Blam(b) => need(&b.bottom_up[0], b.a[0])
                .max(need(&b.bottom_up[1], b.a[1]))
                .max(need(&b.fuse, b.dst)),
            Op::DpConv(d) => need(&d.conv, d.out),
            Op::Pool { .. } | Op::PixelShuffle { .. } => 0,
        }
    }

    fn weight_bytes(&self) -> usize {
        let w = |c: &ConvWeights| c.bytes();
        match self {
            Op::Conv(c) => w(&c.w),
            Op::Block(b) => w(&b.conv1) + w(&b.conv2) + b.shortcut.as_ref().map_or(0, w),
            Op::Blam(b) => w(&b.bottom_up[0]) + w(&b.bottom_up[1]) + 2 * w(&b.fuse),
            Op::DpConv(d) => (d.gen_w.len() + d.gen_b.len()) * 4 + w(&d.conv),
            _ => 0,
        }
    }

    fn run(&mut self, isa: Isa, pool: &ThreadPool, bufs: &mut Buffers, staging: &mut Staging) {
        match self {
            Op::Conv(c) => conv_into(isa, pool, bufs, &c.src, &c.w, c.dst, c.epi, staging),
            Op::Block(b) => b.run(isa, pool, bufs, staging),
            Op::Pool { src, dst } => {
                let og = bufs.geom(dst.buf);
                bufs.write(*dst, |out, bufs| max_pool(pool, bufs.view(*src), out, og));
            }
            Op::PixelShuffle { src, dst } => {
                let og = bufs.geom(dst.buf);
                bufs.write(*dst, |out, bufs| pixel_shuffle(pool, bufs.view(*src), out, og));
            }
            Op::Blam(b) => b.run(isa, pool, bufs, staging),
            Op::DpConv(d) => d.run(isa, pool, bufs, staging),
        }
    }
}

/// What follows a plan convolution's sum (the plan adds residuals in its own passes).
const LINEAR: Epilogue<'static> = Epilogue {
    residual: None,
    relu: false,
    sigmoid: false,
};
const RELU: Epilogue<'static> = Epilogue { relu: true, ..LINEAR };
const SIGMOID: Epilogue<'static> = Epilogue {
    sigmoid: true,
    ..LINEAR
};

/// `conv_up_into` without up-sampled parts (the staging serves a Winograd kernel's scratch).
#[allow(clippy::too_many_arguments)]
fn conv_into(
    isa: Isa,
    pool: &ThreadPool,
    bufs: &mut Buffers,
    src: &Cat,
    w: &ConvWeights,
    dst: Act,
    epi: Epilogue,
    staging: &mut Staging,
) {
    conv_up_into(isa, pool, bufs, src, &[], staging, w, dst, epi);
}

/// Convolves `src` (its `ups` parts up-sampled on the fly) into `dst`.
#[allow(clippy::too_many_arguments)]
fn conv_up_into(
    isa: Isa,
    pool: &ThreadPool,
    bufs: &mut Buffers,
    src: &Cat,
    ups: &[UpTaps],
    staging: &mut Staging,
    w: &ConvWeights,
    dst: Act,
    epi: Epilogue,
) {
    let og = bufs.geom(dst.buf);
    bufs.write(dst, |out, bufs| {
        let (parts, n) = bufs.cat(src);
        with_upsampled(ups, |up| conv(isa, pool, &parts[..n], up, staging, w, out, og, &epi));
    });
}

/// Calls `f` with the kernel's view of `ups` (at most two parts), built on the stack.
fn with_upsampled<R>(ups: &[UpTaps], f: impl FnOnce(&[Upsampled]) -> R) -> R {
    fn up(u: &UpTaps) -> Upsampled<'_> {
        Upsampled {
            part: u.part,
            th: &u.th,
            tw: &u.tw,
        }
    }
    match ups {
        [] => f(&[]),
        [a] => f(&[up(a)]),
        [a, b] => f(&[up(a), up(b)]),
        _ => panic!("at most two up-sampled parts"),
    }
}

/// conv1 (ReLU) into the first `conv1.cout` planes of `dst` and the 1×1 shortcut into the
/// rest, in one pass over `src` (its up-sampled parts staged once for both).
#[allow(clippy::too_many_arguments)]
fn conv1_and_shortcut(
    isa: Isa,
    pool: &ThreadPool,
    bufs: &mut Buffers,
    src: &Cat,
    ups: &[UpTaps],
    staging: &mut Staging,
    conv1: &ConvWeights,
    shortcut: &ConvWeights,
    dst: Act,
) {
    let og = bufs.geom(dst.buf);
    bufs.write(dst, |out, bufs| {
        let (parts, n) = bufs.cat(src);
        let (o1, o2) = out.split_at_mut(conv1.cout * og.plane());
        let mut jobs = [
            ConvJob {
                w: conv1,
                out: o1,
                epi: RELU,
            },
            ConvJob {
                w: shortcut,
                out: o2,
                epi: LINEAR,
            },
        ];
        with_upsampled(ups, |up| conv_many(isa, pool, &parts[..n], up, staging, &mut jobs, og));
    });
}

impl ChannelGate {
    fn compute(&mut self, isa: Isa, pool: &ThreadPool, bufs: &Buffers, x: Act) {
        channel_stats(isa, pool, bufs.view(x), &mut self.avg, &mut self.max);
        channel_gate(
            &self.avg,
            &self.max,
            &self.fc1,
            &self.fc2,
            &mut self.hidden,
            &mut self.scale,
        );
    }
}

impl SpatialGate {
    /// The gate plane `sigmoid(conv7x7([mean_c, max_c](x·scale)))`.
    fn compute(&self, isa: Isa, pool: &ThreadPool, bufs: &mut Buffers, x: Act, scale: &[f32], staging: &mut Staging) {
        let pg = bufs.geom(self.pooled.buf);
        bufs.write(self.pooled, |out, bufs| {
            spatial_pool(isa, pool, bufs.view(x), scale, out, pg)
        });
        conv_into(
            isa,
            pool,
            bufs,
            &Cat::of(&[self.pooled]),
            &self.conv,
            self.gate,
            SIGMOID,
            staging,
        );
    }
}

impl BlockOp {
    /// Staging floats per thread its convolutions need (conv1 and the shortcut stage the
    /// up-sampled parts).
    fn staging_need(&self, threads: usize, bufs: &Buffers) -> usize {
        let ch: usize = self.ups.iter().map(|u| self.src.parts[u.part].n).sum();
        let g = bufs.geom(self.t1.buf);
        let first = |w: &ConvWeights| w.scratch_floats(threads, g, ch);
        first(&self.conv1)
            .max(self.shortcut.as_ref().map_or(0, first))
            .max(self.conv2.scratch_floats(threads, g, 0))
    }

    fn run(&mut self, isa: Isa, pool: &ThreadPool, bufs: &mut Buffers, staging: &mut Staging) {
        let (src, ups) = (&self.src, &self.ups);
        match (&self.shortcut, self.res) {
            (Some(w), Some(res)) => {
                let pair = Act {
                    n: self.t1.n + res.n,
                    ..self.t1
                };
                conv1_and_shortcut(isa, pool, bufs, src, ups, staging, &self.conv1, w, pair);
            }
            _ => conv_up_into(isa, pool, bufs, src, ups, staging, &self.conv1, self.t1, RELU),
        }
        conv_into(
            isa,
            pool,
            bufs,
            &Cat::of(&[self.t1]),
            &self.conv2,
            self.t2,
            LINEAR,
            staging,
        );
        self.ca.compute(isa, pool, bufs, self.t2);
        self.sa.compute(isa, pool, bufs, self.t2, &self.ca.scale, staging);
        let residual = match (&self.shortcut, self.res) {
            (_, Some(res)) => Cat::of(&[res]),
            (Some(w), None) => {
                conv_up_into(isa, pool, bufs, src, ups, staging, w, self.t1, LINEAR);
                Cat::of(&[self.t1])
            }
            (None, None) => self.src,
        };
        let (gate, scale, g, n) = (self.sa.gate, &self.ca.scale, bufs.geom(self.t2.buf), self.t2.n);
        bufs.write(self.t2, |out, bufs| {
            let (parts, k) = bufs.cat(&residual);
            gate_residual(isa, pool, out, g, n, scale, bufs.view(gate), &parts[..k]);
        });
    }
}

impl BlamOp {
    fn run(&mut self, isa: Isa, pool: &ThreadPool, bufs: &mut Buffers, staging: &mut Staging) {
        let [a, a2] = self.a;
        conv_into(
            isa,
            pool,
            bufs,
            &Cat::of(&[self.low]),
            &self.bottom_up[0],
            a,
            RELU,
            staging,
        );
        conv_into(isa, pool, bufs, &Cat::of(&[a]), &self.bottom_up[1], a2, RELU, staging);
        // ECA: w = sigmoid(conv1d_k3(sigmoid(GMP(high)))), zero-padded; folded into the fusion
        // convolution as a scale on its first C input channels (the ECA-gated `high`).
        channel_stats(isa, pool, bufs.view(self.high), &mut self.avg, &mut self.max);
        let c = self.max.len();
        let g = |i: isize| {
            if (0..c as isize).contains(&i) {
                sigmoid(self.max[i as usize])
            } else {
                0.0
            }
        };
        for i in 0..c {
            let j = i as isize;
            self.gate[i] = sigmoid(self.eca[0] * g(j - 1) + self.eca[1] * g(j) + self.eca[2] * g(j + 1));
        }
        self.fuse.scale_inputs_from(&self.fuse_base, &self.gate);
        conv_into(
            isa,
            pool,
            bufs,
            &Cat::of(&[self.high, a2]),
            &self.fuse,
            self.dst,
            RELU,
            staging,
        );
    }
}

impl DpOp {
    fn run(&mut self, isa: Isa, pool: &ThreadPool, bufs: &mut Buffers, staging: &mut Staging) {
        // Info vector p = A·GAP(Y ⊙ SA(Y ⊙ CA(Y))) + a. The reference's quirk is kept: SA sees
        // the CA-weighted Y but multiplies the original Y.
        self.ca.compute(isa, pool, bufs, self.y);
        self.sa.compute(isa, pool, bufs, self.y, &self.ca.scale, staging);
        gated_mean(bufs.view(self.y), bufs.view(self.sa.gate), &mut self.gap);
        let z = self.gap.len();
        for (o, p) in self.p.iter_mut().enumerate() {
            *p = self.info_b[o] + (0..z).map(|i| self.info_w[o * z + i] * self.gap[i]).sum::<f32>();
        }
        // This frame's kernel, θ[j] = Wg[j]·p[j / G] + Bg[j], written into the packed layout.
        let (m, kk, g) = (self.conv.cin, self.conv.k * self.conv.k, self.group);
        let (gw, gb, p) = (&self.gen_w, &self.gen_b, &self.p);
        self.conv.repack(|o, i, t| {
            let j = (o * m + i) * kk + t;
            gw[j] * p[j / g] + gb[j]
        });
        conv_into(
            isa,
            pool,
            bufs,
            &Cat::of(&[self.pre]),
            &self.conv,
            self.out,
            LINEAR,
            staging,
        );
        // x3_0 ← x3_0 + DPConv(x3_0, Y): residual, with no BN or activation after it.
        let (pre, out) = (self.pre, self.out);
        bufs.write(self.dst, |dst, bufs| {
            let (a, b) = (bufs.view(pre), bufs.view(out));
            for ((d, &x), &y) in dst.iter_mut().zip(a.data).zip(b.data) {
                *d = x + y;
            }
        });
    }
}
