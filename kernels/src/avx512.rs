//! What the AVX-512 paths of several kernels share (`amx.rs`'s packers, `conv/lanes.rs`'s transforms).

use core::arch::x86_64::__mmask16;

/// The mask of the first `len` of 16 lanes (all 16 from `len` = 16 up): a partial vector's loads and stores.
#[inline(always)]
pub(crate) fn mask(len: usize) -> __mmask16 {
    if len >= 16 {
        0xffff
    } else {
        ((1u32 << len) - 1) as __mmask16
    }
}
