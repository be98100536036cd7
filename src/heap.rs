//! glibc heap policy: freed memory kept in the process during training, handed back after a one-off burst.
//!
//! Why: a training step allocates and frees hundreds of tensors of 1–300 MB (activations,
//! gradients, im2col matrices). glibc serves every allocation above its mmap threshold (at most
//! 32 MiB) with a fresh `mmap` and returns it with `munmap` on free, so each step page-faults and
//! the kernel zeroes every page again: `perf` on a lite seg step (batch 8, 256²) showed a quarter
//! of the time in `exc_page_fault` and `clear_page_erms`, and 42 s of system time in 64 s. Serving
//! them from the heap instead, and never trimming it, keeps the pages mapped from step to step:
//! 0.50 → 0.57–0.59 images/s on that step (`srsnet bench --train seg`, 2 threads; system time 42 s
//! → 5 s). The cost is that the
//! process keeps its peak heap until it exits, which is what a training run reaches every step
//! anyway. Inference does not need this: the CPU plan allocates nothing per frame.

/// Makes glibc's allocator keep freed memory for reuse (no `mmap` per large block, no trimming).
/// Process-wide; meant for the training commands. Elsewhere (musl, macOS) it does nothing.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before the training
    // threads start and is documented as safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// Hands the heap's free pages back to the kernel (glibc's `malloc_trim`). For a one-off burst
/// of large temporaries before a long-running job, such as `srsnet run` deriving the synthetic
/// camera's factory calibration: without it the freed flat-field statistics stayed in the
/// process and raised the 640×512 stream's peak resident memory by 5 MB. Elsewhere it does
/// nothing.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no live allocation is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
