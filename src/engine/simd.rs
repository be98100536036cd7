//! The instruction sets the kernels are compiled for, detected once and chosen at run time.
//!
//! pulp does the detection and compiles each kernel once per instruction set (its
//! `WithSimd` ops run inside `#[target_feature]` functions); this is the only place that
//! names an instruction set. Kernels are generic over `pulp::Simd`, and every helper they call
//! is `#[inline(always)]` so that it is compiled with the caller's target features.

use pulp::{Simd, WithSimd};

/// One instruction set the engine can run its kernels with.
#[derive(Debug, Clone, Copy)]
pub enum Isa {
    /// Plain Rust, one lane: the reference the vector paths are tested against.
    Scalar,
    /// x86-64 AVX2 + FMA (8 f32 lanes).
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    /// x86-64 AVX-512F (16 f32 lanes).
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    /// aarch64 NEON (4 f32 lanes), e.g. the Jetson Orin's Cortex-A78AE.
    #[cfg(target_arch = "aarch64")]
    Neon(pulp::aarch64::Neon),
}

impl Isa {
    /// Every instruction set this CPU can run, scalar first and the fastest last.
    pub fn available() -> Vec<Isa> {
        let mut all = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            all.extend(pulp::x86::V3::try_new().map(Isa::Avx2));
            all.extend(pulp::x86::V4::try_new().map(Isa::Avx512));
        }
        #[cfg(target_arch = "aarch64")]
        all.extend(pulp::aarch64::Neon::try_new().map(Isa::Neon));
        all
    }

    /// The fastest instruction set this CPU has.
    pub fn best() -> Isa {
        Self::available().pop().unwrap_or(Isa::Scalar)
    }

    /// The instruction set called `name` (`scalar`, `avx2`, `avx512`, `neon`), if this CPU has it.
    pub fn by_name(name: &str) -> Option<Isa> {
        Self::available().into_iter().find(|i| i.name() == name)
    }

    /// The name `--isa` and `bench` use.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => "avx512",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon(_) => "neon",
        }
    }

    /// Runs `op` compiled for this instruction set.
    #[inline(always)]
    pub fn dispatch<Op: WithSimd>(self, op: Op) -> Op::Output {
        match self {
            Isa::Scalar => Simd::vectorize(pulp::Scalar, op),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(s) => Simd::vectorize(s, op),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(s) => Simd::vectorize(s, op),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon(s) => Simd::vectorize(s, op),
        }
    }
}

/// Loads one vector from `s[i..i + lanes]`.
///
/// # Safety
/// `i + S::F32_LANES <= s.len()` (checked in debug builds).
#[inline(always)]
pub(crate) unsafe fn load<S: Simd>(s: &[f32], i: usize) -> S::f32s {
    debug_assert!(i + S::F32_LANES <= s.len());
    // SAFETY: `f32s` is a plain array of f32 lanes; the caller guarantees the range.
    unsafe { (s.as_ptr().add(i) as *const S::f32s).read_unaligned() }
}

/// Stores one vector at `p[0..lanes]`.
///
/// # Safety
/// `p` points to `S::F32_LANES` writable floats that no one else accesses meanwhile.
#[inline(always)]
pub(crate) unsafe fn store<S: Simd>(p: *mut f32, v: S::f32s) {
    // SAFETY: see the function's contract.
    unsafe { (p as *mut S::f32s).write_unaligned(v) }
}
