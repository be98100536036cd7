//! A generator of IR-like frames with known targets: cloud and ground clutter, fixed-pattern
//! noise (per-column offsets and per-pixel gain), temporal sensor noise, and dim moving targets
//! of 1–20 px. Deterministic given the seed. It feeds tests, examples and `--source synthetic`.

use crate::calibration::FlatStats;
use crate::dataset::sequence::write_centroids;
use crate::image_io::{write_gray16_png, write_gray_png, Pixels};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameters of a synthetic scene.
#[derive(Debug, Clone)]
pub struct SceneConfig {
    /// Frame columns.
    pub width: usize,
    /// Frame rows.
    pub height: usize,
    /// Moving targets.
    pub targets: usize,
    /// Seed of the scene and its noise.
    pub seed: u64,
    /// Target peak contrast above the local background, in [0, 1] intensity units.
    pub contrast: f32,
    /// Standard deviation of temporal noise, in [0, 1] intensity units.
    pub noise: f32,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            width: 256,
            height: 256,
            targets: 2,
            seed: 7,
            contrast: 0.25,
            noise: 0.01,
        }
    }
}

/// A target's true position in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthPoint {
    /// Column and row of the target centre, 0-based pixel coordinates.
    pub x: f64,
    /// Row of the target centre.
    pub y: f64,
    /// Approximate area above half of the peak contrast, in pixels.
    pub area: f64,
}

#[derive(Debug, Clone)]
struct MovingTarget {
    x: f64,
    y: f64,
    vx: f64,
    vy: f64,
    sigma: f64,
    contrast: f32,
}

/// A scene: a static background and fixed-pattern noise, plus moving targets.
pub struct Scene {
    cfg: SceneConfig,
    background: Vec<f32>,
    column_offset: Vec<f32>,
    pixel_gain: Vec<f32>,
    /// Dead (stuck) pixels and the value they are stuck at.
    dead: Vec<(usize, f32)>,
    targets: Vec<MovingTarget>,
    rng: ChaCha8Rng,
    drift: (f64, f64),
}

impl Scene {
    /// A scene with its background, sensor and targets drawn from the seed.
    pub fn new(cfg: SceneConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let (w, h) = (cfg.width, cfg.height);
        let background = clutter(w, h, &mut rng);
        let column_offset = (0..w).map(|_| rng.gen_range(-0.01f32..0.01)).collect();
        let pixel_gain = (0..w * h).map(|_| 1.0 + rng.gen_range(-0.02f32..0.02)).collect();
        // About one pixel in 2000 is stuck dark or bright, as on real microbolometers.
        let dead = (0..(w * h / 2000).max(1))
            .map(|_| (rng.gen_range(0..w * h), if rng.gen_bool(0.5) { 0.0 } else { 1.0 }))
            .collect();
        let margin = 12.0;
        let targets = (0..cfg.targets)
            .map(|_| {
                // Areas from 1 to about 20 px: sigma 0.35 → ~1 px above half peak, 1.6 → ~18 px.
                let sigma = rng.gen_range(0.35..1.6);
                MovingTarget {
                    x: rng.gen_range(margin..(w as f64 - margin).max(margin + 1.0)),
                    y: rng.gen_range(margin..(h as f64 - margin).max(margin + 1.0)),
                    vx: rng.gen_range(-1.5..1.5),
                    vy: rng.gen_range(-1.0..1.0),
                    sigma,
                    contrast: cfg.contrast * rng.gen_range(0.8f32..1.2),
                }
            })
            .collect();
        let drift = (rng.gen_range(-0.3..0.3), rng.gen_range(-0.2..0.2));
        Self {
            cfg,
            background,
            column_offset,
            pixel_gain,
            dead,
            targets,
            rng,
            drift,
        }
    }

    /// The scene's parameters.
    pub fn config(&self) -> &SceneConfig {
        &self.cfg
    }

    /// The per-pixel gain and per-column offset the simulated sensor applies (for calibration tests).
    pub fn fixed_pattern(&self) -> (&[f32], &[f32]) {
        (&self.pixel_gain, &self.column_offset)
    }

    /// Frame `index` as intensities in [0, 1] (row-major), with the targets' true positions.
    pub fn frame(&mut self, index: usize) -> (Vec<f32>, Vec<TruthPoint>) {
        let (img, truth, _) = self.frame_with_masks(index);
        (img, truth)
    }

    /// Frame `index` with each target's exact mask: the pixel indices where the target's own
    /// signal is at least half of its largest sampled value (its half-maximum extent).
    pub fn frame_with_masks(&mut self, index: usize) -> (Vec<f32>, Vec<TruthPoint>, Vec<Vec<usize>>) {
        let (w, h) = (self.cfg.width, self.cfg.height);
        let t = index as f64;
        // The background drifts slowly (camera pan), sampled mirrored at the edges so the
        // pan never creates a seam (a wrap-around would put the warm ground next to the sky).
        let (dx, dy) = ((self.drift.0 * t).round() as isize, (self.drift.1 * t).round() as isize);
        let mut img = vec![0f32; w * h];
        for y in 0..h {
            let sy = mirror(y as isize + dy, h);
            for x in 0..w {
                img[y * w + x] = self.background[sy * w + mirror(x as isize + dx, w)];
            }
        }
        let (mut truth, mut masks) = (Vec::new(), Vec::new());
        for tg in &self.targets {
            let (cx, cy) = bounce(tg.x + tg.vx * t, w as f64, 8.0, tg.y + tg.vy * t, h as f64);
            let added = splat(w, h, cx, cy, tg.sigma, tg.contrast);
            let top = added.iter().map(|a| a.1).fold(0f32, f32::max);
            masks.push(added.iter().filter(|a| a.1 >= 0.5 * top).map(|a| a.0).collect());
            for (i, v) in added {
                img[i] += v;
            }
            let area = (2.0 * std::f64::consts::PI * tg.sigma * tg.sigma * std::f64::consts::LN_2).max(1.0);
            truth.push(TruthPoint { x: cx, y: cy, area });
        }
        self.sense(&mut img);
        (img, truth, masks)
    }

    /// A frame of a uniform scene at `level` seen through the same sensor (flat-field
    /// recordings for `srsnet calibrate`).
    pub fn flat_field(&mut self, level: f32) -> Vec<f32> {
        let mut img = vec![level; self.cfg.width * self.cfg.height];
        self.sense(&mut img);
        img
    }

    /// The simulated sensor: temporal noise, per-pixel gain, per-column offset, dead pixels.
    fn sense(&mut self, img: &mut [f32]) {
        let w = self.cfg.width;
        for (i, v) in img.iter_mut().enumerate() {
            let noise: f32 = self.rng.sample::<f32, _>(rand::distributions::Standard) - 0.5;
            let n = noise * self.cfg.noise * 3.46; // uniform with the configured std
            *v = ((*v + n) * self.pixel_gain[i] + self.column_offset[i % w]).clamp(0.0, 1.0);
        }
        for &(i, stuck) in &self.dead {
            img[i] = stuck;
        }
    }
}

/// Index `i` reflected into 0..n (…, 1, 0, 0, 1, …, n−1, n−1, n−2, …).
fn mirror(i: isize, n: usize) -> usize {
    let p = i.rem_euclid(2 * n as isize) as usize;
    if p < n {
        p
    } else {
        2 * n - 1 - p
    }
}

/// Keeps a moving point inside the frame by reflecting it at a margin.
fn bounce(x: f64, w: f64, m: f64, y: f64, h: f64) -> (f64, f64) {
    let reflect = |v: f64, n: f64| {
        let span = (n - 2.0 * m).max(1.0);
        let p = (v - m).rem_euclid(2.0 * span);
        m + if p > span { 2.0 * span - p } else { p }
    };
    (reflect(x, w), reflect(y, h))
}

/// A Gaussian spot (the optics' blur of a point target): the value it adds to each pixel.
fn splat(w: usize, h: usize, cx: f64, cy: f64, sigma: f64, contrast: f32) -> Vec<(usize, f32)> {
    let r = (3.0 * sigma).ceil() as isize + 1;
    let (ix, iy) = (cx.round() as isize, cy.round() as isize);
    let mut out = Vec::new();
    for y in (iy - r).max(0)..=(iy + r).min(h as isize - 1) {
        for x in (ix - r).max(0)..=(ix + r).min(w as isize - 1) {
            let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
            out.push((
                y as usize * w + x as usize,
                contrast * (-d2 / (2.0 * sigma * sigma)).exp() as f32,
            ));
        }
    }
    out
}

/// Cloud-like clutter (octaves of smoothed value noise) over a ground band with texture.
fn clutter(w: usize, h: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut img = vec![0f32; w * h];
    let mut amp = 0.18f32;
    for cell in [64usize, 32, 16, 8] {
        let gw = w / cell + 2;
        let gh = h / cell + 2;
        let grid: Vec<f32> = (0..gw * gh).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        for y in 0..h {
            let gy = y as f32 / cell as f32;
            let (y0, fy) = (gy.floor() as usize, smooth(gy.fract()));
            for x in 0..w {
                let gx = x as f32 / cell as f32;
                let (x0, fx) = (gx.floor() as usize, smooth(gx.fract()));
                let a = grid[y0 * gw + x0] * (1.0 - fx) + grid[y0 * gw + x0 + 1] * fx;
                let b = grid[(y0 + 1) * gw + x0] * (1.0 - fx) + grid[(y0 + 1) * gw + x0 + 1] * fx;
                img[y * w + x] += amp * (a * (1.0 - fy) + b * fy);
            }
        }
        amp *= 0.5;
    }
    // A warmer ground band in the lower part, with fine texture.
    let horizon = h as f32 * rng.gen_range(0.65f32..0.85);
    for y in 0..h {
        let ground = ((y as f32 - horizon) / 6.0).tanh() * 0.5 + 0.5;
        for x in 0..w {
            let tex = rng.gen_range(-0.03f32..0.03);
            img[y * w + x] = 0.35 + img[y * w + x] + ground * (0.15 + tex);
        }
    }
    img
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Sample depth of synthetic frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BitDepth {
    /// 8-bit gray.
    #[value(name = "8")]
    Eight,
    /// 16-bit words holding a 14-bit radiometric range, as thermal cores deliver.
    #[value(name = "16")]
    Sixteen,
}

/// The simulated sensor's output: intensities in [0, 1] quantised as 8-bit values
/// (round(v·255)) or as 16-bit words in a 14-bit range with an offset (2000 + v·12000), as a
/// radiometric core delivers. The one quantisation of every synthetic frame, streamed or written.
pub fn quantise(img: &[f32], bits: BitDepth) -> Pixels {
    match bits {
        BitDepth::Eight => Pixels::U8(img.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()),
        BitDepth::Sixteen => Pixels::U16(
            img.iter()
                .map(|&v| (2000.0 + v.clamp(0.0, 1.0) * 12000.0).round() as u16)
                .collect(),
        ),
    }
}

/// Flat-field frames per level in [`factory_profile`], as `calibration/README.md` records for
/// the shipped example profile.
const FACTORY_FLAT_FRAMES: usize = 16;

/// The synthetic camera's factory calibration: the two-point profile (NUC + bad pixels) that
/// `srsnet calibrate` builds from 16 cold (0.3) and 16 hot (0.7) flat fields of the same
/// sensor, in its raw units. Real IR cores ship with such a defect table; without it the
/// simulated stuck-bright pixels, single-pixel spikes with no optical blur, are what the
/// network reports as point targets (about 19 per frame at 320×256, see README.md).
pub fn factory_profile(cfg: &SceneConfig, bits: BitDepth) -> anyhow::Result<crate::calibration::Profile> {
    // Each level is its own recording of a fresh camera, as two `srsnet synth --flat` runs are.
    let record = |level: f32| {
        let mut scene = Scene::new(cfg.clone());
        let mut stats = FlatStats::new(cfg.width * cfg.height);
        for _ in 0..FACTORY_FLAT_FRAMES {
            stats.add(&quantise(&scene.flat_field(level), bits).values());
        }
        stats
    };
    crate::calibration::two_point_from(cfg.width, cfg.height, &record(0.3), &record(0.7))
}

/// What `srsnet synth` writes.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    /// Frames to write.
    pub count: usize,
    /// Scene parameters (size, targets, seed, ...).
    pub scene: SceneConfig,
    /// Sample depth.
    pub bits: BitDepth,
    /// Flat fields of this level in [0, 1] instead of scenes (for `srsnet calibrate`).
    pub flat: Option<f32>,
}

/// Writes a sequence in the DAUB layout (see [`crate::dataset::sequence`]):
/// `out/frames/synthetic_NNNN.png` and `out/centroids.csv` with every target's true centre,
/// so `srsnet run --source OUT` and `srsnet eval --sequence OUT` replay it with its truth.
pub fn write_sequence(out: &std::path::Path, req: &SynthRequest) -> anyhow::Result<()> {
    use anyhow::Context;
    let frames = out.join("frames");
    std::fs::create_dir_all(&frames).with_context(|| format!("creating {}", frames.display()))?;
    let mut scene = Scene::new(req.scene.clone());
    let (w, h) = (req.scene.width, req.scene.height);
    let mut rows = Vec::new();
    for i in 0..req.count {
        let (img, truth) = match req.flat {
            Some(level) => (scene.flat_field(level), vec![]),
            None => scene.frame(i),
        };
        let name = format!("synthetic_{i:04}.png");
        let path = frames.join(&name);
        match quantise(&img, req.bits) {
            Pixels::U8(v) => write_gray_png(&path, w, h, &v)?,
            Pixels::U16(v) => write_gray16_png(&path, w, h, &v)?,
        }
        rows.extend(truth.iter().map(|t| (name.clone(), t.x, t.y)));
    }
    write_centroids(&out.join("centroids.csv"), &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factory_profile_is_the_shipped_calibration_of_the_default_camera() {
        // calibration/README.md records how the shipped file was made with `srsnet synth --flat`
        // and `srsnet calibrate`: the in-process profile must flag the same pixels and correct
        // them the same way.
        let shipped = crate::calibration::Profile::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/synthetic-320x256-seed7.safetensors"),
        )
        .unwrap();
        let cfg = SceneConfig {
            width: 320,
            height: 256,
            seed: 7,
            ..Default::default()
        };
        let made = factory_profile(&cfg, BitDepth::Eight).unwrap();
        assert_eq!((made.width, made.height), (320, 256));
        assert_eq!(made.bad.iter().filter(|&&b| b).count(), 40);
        assert_eq!(made.bad, shipped.bad);
        let worst = made
            .gain
            .iter()
            .zip(&shipped.gain)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "gain differs by {worst}");
    }

    #[test]
    fn deterministic_given_seed() {
        let cfg = SceneConfig {
            width: 64,
            height: 48,
            ..Default::default()
        };
        let a = Scene::new(cfg.clone()).frame(3);
        let b = Scene::new(cfg).frame(3);
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
    }

    #[test]
    fn targets_are_brighter_than_their_surroundings() {
        let cfg = SceneConfig {
            width: 128,
            height: 128,
            targets: 3,
            noise: 0.0,
            ..Default::default()
        };
        let mut scene = Scene::new(cfg);
        let (img, truth) = scene.frame(0);
        for t in truth {
            let (x, y) = (t.x.round() as usize, t.y.round() as usize);
            let centre = img[y * 128 + x];
            let ring = img[(y + 6) * 128 + x].max(img[(y - 6) * 128 + x]);
            assert!(
                centre > ring + 0.05,
                "target at ({x},{y}) not visible: {centre} vs {ring}"
            );
        }
    }

    #[test]
    fn targets_stay_inside_the_frame() {
        let mut scene = Scene::new(SceneConfig {
            width: 64,
            height: 64,
            targets: 4,
            ..Default::default()
        });
        for i in 0..500 {
            for t in scene.frame(i).1 {
                assert!(t.x >= 0.0 && t.x < 64.0 && t.y >= 0.0 && t.y < 64.0);
            }
        }
    }
}
