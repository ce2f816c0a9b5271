//! What the AVX-512 paths of several kernels share (`amx.rs`'s packers, `conv/lanes.rs`'s transforms, im2col's
//! strided rows, Adam's loop).

use core::arch::x86_64::__mmask16;

/// Whether the CPU has AVX-512F (detected once per process): the kernels' AVX-512 paths run where it does.
#[cfg(feature = "std")]
pub(crate) fn available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// The mask of the first `len` of 16 lanes (all 16 from `len` = 16 up): a partial vector's loads and stores.
#[inline(always)]
pub(crate) fn mask(len: usize) -> __mmask16 {
    if len >= 16 {
        0xffff
    } else {
        ((1u32 << len) - 1) as __mmask16
    }
}
