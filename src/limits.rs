//! The stated limits every size and count from the command line or a file is checked against
//! before anything is allocated, so an absurd value is an error that names the limit instead of
//! an allocation failure (abort) deep inside a kernel.

use anyhow::{bail, Result};

/// Largest width or height of a frame, image or raw recording we accept.
pub const MAX_FRAME_SIDE: usize = 16_384;

/// Largest frame in pixels (4096×2048, a little above 4K UHD's 3840×2160). The lite network
/// on the CPU holds about 1.1 kB of activations per pixel at once, so this bounds one frame's
/// inference to roughly 9 GB on this project's 24 GB reference machine.
pub const MAX_FRAME_PIXELS: usize = 4096 * 2048;

/// Longest temporal-confirmation window (`--confirm M/N`), in frames.
pub const MAX_CONFIRM_WINDOW: usize = 1000;

/// Largest scene shift between consecutive frames that static-clutter rejection follows
/// (`--static-register`), in px: the search costs the square of it per frame.
pub const MAX_STATIC_REGISTER: usize = 64;

/// Most still frames a static-clutter track may go undetected and live on (`--static-gap`).
pub const MAX_STATIC_GAP: usize = 100;

/// Most frames back the motion gate compares with (`--motion-gate`): it keeps that many
/// frames in memory (30 frames of 1280×1024 are 150 MiB).
pub const MAX_MOTION_GATE: usize = 30;

/// Largest training or benchmark batch.
pub const MAX_BATCH: usize = 1024;

/// Checks a frame size against [`MAX_FRAME_SIDE`] and [`MAX_FRAME_PIXELS`]; `what` names the
/// frame in the error (a file, a source, an option).
pub fn check_frame_size(what: &str, width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        bail!("{what}: {width}×{height} is empty; width and height must be positive");
    }
    if width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE {
        bail!("{what}: {width}×{height} exceeds the largest side we take ({MAX_FRAME_SIDE} px)");
    }
    match width.checked_mul(height) {
        Some(n) if n <= MAX_FRAME_PIXELS => Ok(()),
        _ => bail!(
            "{what}: {width}×{height} exceeds the largest frame we take ({MAX_FRAME_PIXELS} pixels, e.g. 4096×2048)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_inside_and_outside_the_limits() {
        assert!(check_frame_size("f", 640, 512).is_ok());
        assert!(check_frame_size("f", 4096, 2048).is_ok());
        let e = check_frame_size("--size", 100_000, 100_000).unwrap_err().to_string();
        assert!(e.contains("--size") && e.contains("16384"), "{e}");
        let e = check_frame_size("f", 8192, 8192).unwrap_err().to_string();
        assert!(e.contains("8388608"), "{e}");
        assert!(check_frame_size("f", 0, 5).is_err());
        assert!(check_frame_size("f", usize::MAX, usize::MAX).is_err());
    }
}
