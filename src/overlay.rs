//! Overlays for people to inspect: the frame in gray with marks drawn on it. One set of marks
//! for every command that draws them (`run --overlays`, `label`), so a colour means the same
//! thing everywhere:
//! - red box with its id in yellow: a detection;
//! - green: ground truth (a cross at a true centre, never covering the centre pixel itself,
//!   or the outline of a true mask);
//! - yellow cross: an annotation that was skipped (`label`).

use crate::dataset::Truth;
use crate::detect::Target;
use crate::image_io::Frame;
use image::{Rgb, RgbImage};

/// Detections.
pub const DETECTION: [u8; 3] = [255, 40, 40];
/// Detection ids.
pub const LABEL: [u8; 3] = [255, 255, 0];
/// Ground truth.
pub const TRUTH: [u8; 3] = [0, 255, 0];
/// Skipped annotations.
pub const SKIPPED: [u8; 3] = [255, 220, 0];

/// 3×5 bitmaps of the digits 0–9, one row per 3 bits.
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// Intensities in [0, 1] as a gray RGB image.
pub fn gray(values: &[f32], w: usize, h: usize) -> RgbImage {
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (values[y as usize * w + x as usize] * 255.0).round().clamp(0.0, 255.0) as u8;
        Rgb([v, v, v])
    })
}

/// Sets a pixel when it is inside the image.
fn put(img: &mut RgbImage, x: isize, y: isize, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

/// A cross around (x, y) with arms 3–4 px out, leaving the centre visible.
pub fn cross(img: &mut RgbImage, x: f64, y: f64, c: [u8; 3]) {
    let (x, y) = (x.round() as isize, y.round() as isize);
    for d in [-4isize, -3, 3, 4] {
        put(img, x + d, y, c);
        put(img, x, y + d, c);
    }
}

/// The boundary of a mask (mask pixels with a 4-neighbour outside it).
pub fn outline(img: &mut RgbImage, mask: &[bool], w: usize, h: usize, c: [u8; 3]) {
    let inside = |x: isize, y: isize| {
        x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h && mask[y as usize * w + x as usize]
    };
    for y in 0..h as isize {
        for x in 0..w as isize {
            if inside(x, y)
                && [(1, 0), (-1, 0), (0, 1), (0, -1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy))
            {
                put(img, x, y, c);
            }
        }
    }
}

/// A box 2 px outside `bbox` with `id` written above it.
fn detection_box(img: &mut RgbImage, t: &Target) {
    let [x0, y0, x1, y1] = t.bbox.map(|v| v as isize);
    let (x0, y0, x1, y1) = (x0 - 2, y0 - 2, x1 + 2, y1 + 2);
    for x in x0..=x1 {
        put(img, x, y0, DETECTION);
        put(img, x, y1, DETECTION);
    }
    for y in y0..=y1 {
        put(img, x0, y, DETECTION);
        put(img, x1, y, DETECTION);
    }
    for (k, ch) in t.id.to_string().bytes().enumerate() {
        let glyph = DIGITS[(ch - b'0') as usize];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    put(img, x0 + (k * 4 + col) as isize, y0 - 7 + row as isize, LABEL);
                }
            }
        }
    }
}

/// The frame with the ground truth (green) under the detections (red boxes with ids).
pub fn detections(frame: &Frame, targets: &[Target], truth: Option<&Truth>) -> RgbImage {
    let (w, h) = (frame.width, frame.height);
    let mut img = gray(frame.plane(0), w, h);
    match truth {
        Some(Truth::Points(points)) => {
            for &(x, y) in points {
                cross(&mut img, x, y, TRUTH);
            }
        }
        Some(Truth::Mask(mask)) if mask.len() == w * h => outline(&mut img, mask, w, h, TRUTH),
        _ => {}
    }
    for t in targets {
        detection_box(&mut img, t);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colour_at(img: &RgbImage, x: u32, y: u32) -> [u8; 3] {
        img.get_pixel(x, y).0
    }

    #[test]
    fn truth_is_green_and_detections_are_red() {
        let frame = Frame::new(40, 30, 1, vec![0.5; 40 * 30]).unwrap();
        let target = Target {
            id: 1,
            x: 30.0,
            y: 20.0,
            area: 1,
            bbox: [30, 20, 30, 20],
            peak: 1.0,
            pixel_centroid: (30.0, 20.0),
        };
        let img = detections(&frame, &[target], Some(&Truth::Points(vec![(10.0, 10.0)])));
        assert_eq!(colour_at(&img, 13, 10), TRUTH);
        assert_eq!(colour_at(&img, 10, 6), TRUTH);
        assert_eq!(
            colour_at(&img, 10, 10),
            [128, 128, 128],
            "the true centre stays visible"
        );
        assert_eq!(colour_at(&img, 28, 20), DETECTION);
        assert_eq!(colour_at(&img, 32, 22), DETECTION);
        // A mask: its boundary, not its inside.
        let mut mask = vec![false; 40 * 30];
        for y in 5..10 {
            for x in 5..10 {
                mask[y * 40 + x] = true;
            }
        }
        let img = detections(&frame, &[], Some(&Truth::Mask(mask)));
        assert_eq!(colour_at(&img, 5, 7), TRUTH);
        assert_eq!(colour_at(&img, 9, 9), TRUTH);
        assert_eq!(colour_at(&img, 7, 7), [128, 128, 128]);
        assert_eq!(colour_at(&img, 4, 7), [128, 128, 128]);
    }
}
