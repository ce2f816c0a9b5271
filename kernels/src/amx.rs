//! An f32 GEMM on Intel AMX tiles: the operands rounded to bfloat16 (round to nearest even), the products
//! accumulated in f32 — mixed precision, as PyTorch's `autocast(dtype=torch.bfloat16)` on CPU.
//!
//! Layout. `lhs` (m × k) is packed into 16 × 32 bf16 tiles, `rhs` (k × n) into 16 × 16 tiles of bf16 pairs
//! (AMX's "VNNI" layout: row `p` holds rows `2p` and `2p + 1` of the source, interleaved), both padded with zeros
//! to whole pairs of tiles. Each task computes 32 × 32 blocks of the product in the eight tile registers (four
//! accumulators, two tiles of each operand), walking k 32 at a time with `tdpbf16ps`.
//!
//! The AMX instructions are written with `asm!` (Rust's AMX intrinsics are unstable). Linux hands AMX's tile
//! state to a process only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), which
//! [`available`] makes once; [`supported`] only reads CPUID.

/// Rows and 32-bit columns of every tile used here: 16 × 64 bytes.
pub(crate) const TILE_ROWS: usize = 16;
/// bf16 values in a tile row.
pub(crate) const TILE_K: usize = 32;
/// f32 (or bf16-pair) columns in a tile row.
pub(crate) const TILE_N: usize = 16;
/// bf16 values in one tile.
pub(crate) const TILE_LEN: usize = TILE_ROWS * TILE_K;

/// `f32` → `bf16` bits, rounded to nearest even; NaN stays NaN.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if x.is_nan() {
        return ((u >> 16) | 0x40) as u16;
    }
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// `bf16` bits → `f32`.
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Whether this CPU and OS offer AMX bf16 tiles (AMX-TILE, AMX-BF16, AVX-512 BF16, tile state saved by the OS).
/// CPUID and XCR0 only: it asks the OS for nothing.
pub fn supported() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && cpu_has_amx()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Whether this process may run AMX bf16 tiles: [`supported`], and Linux granted the tile state, which the first
/// call asks for (later calls repeat the answer). Call it only where AMX will be used.
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| supported() && imp::request_tile_state())
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-BF16 (EDX bit 22), and the OS saving tile state (XCR0 bits
/// 17 and 18, through OSXSAVE).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn cpu_has_amx() -> bool {
    let cpuid = raw_cpuid::CpuId::new();
    let Some(f) = cpuid.get_extended_feature_info() else { return false };
    if !(f.has_amx_tile() && f.has_amx_bf16()) {
        return false;
    }
    let Some(fi) = cpuid.get_feature_info() else { return false };
    if !fi.has_oxsave() {
        return false;
    }
    // SAFETY: OSXSAVE is set, so XGETBV is available.
    let xcr0 = unsafe { core::arch::x86_64::_xgetbv(0) };
    xcr0 & (0b11 << 17) == (0b11 << 17)
}

/// The AVX-512 pieces of the packers, for operands packed straight from where they live (`conv::implicit`).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use imp::simd;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use imp::{gemm, gemm_packed, gemm_packed_by, PackedLhs, RhsTiles};

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::{bf16_bits, TILE_K, TILE_LEN, TILE_N, TILE_ROWS};
    use core::arch::asm;
    use rayon::prelude::*;

    /// Linux's `arch_prctl` request for an extended state component, and AMX's tile data component.
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    const SYS_ARCH_PRCTL: i64 = 158;

    pub fn request_tile_state() -> bool {
        let ret: i64;
        // SAFETY: a plain system call with integer arguments; it changes only this process's permitted state.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    /// Palette 1, eight tiles of 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn new() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..8 {
                c[16 + 2 * t] = 64;
                c[48 + t] = TILE_ROWS as u8;
            }
            Self(c)
        }
    }

    /// Loads the tile configuration on this thread for `f`, and releases the tiles afterwards.
    fn with_tiles<R>(f: impl FnOnce() -> R) -> R {
        let cfg = TileConfig::new();
        // SAFETY: the process has the tile state (`available`), the configuration is valid for palette 1.
        unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
        let r = f();
        // SAFETY: as above.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
        r
    }

    /// The packed `rhs`, written by disjoint tile rows from several tasks.
    #[derive(Clone, Copy)]
    struct Out(*mut u16);
    unsafe impl Send for Out {}
    unsafe impl Sync for Out {}

    /// A strided f32 matrix to read.
    #[derive(Clone, Copy)]
    struct Src {
        ptr: *const f32,
        cs: usize,
        rs: usize,
    }
    unsafe impl Send for Src {}
    unsafe impl Sync for Src {}

    impl Src {
        #[inline(always)]
        unsafe fn at(&self, i: usize, j: usize) -> f32 {
            unsafe { *self.ptr.add(i * self.rs + j * self.cs) }
        }
    }

    /// `lhs` rows `16·t .. 16·t + 16` as `kt` tiles of 16 × 32 bf16, zero beyond m and k.
    fn pack_lhs_strip_scalar(a: Src, m: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
        for kb in 0..kt {
            let tile = &mut out[kb * TILE_LEN..(kb + 1) * TILE_LEN];
            for r in 0..TILE_ROWS {
                let i = t * TILE_ROWS + r;
                let row = &mut tile[r * TILE_K..(r + 1) * TILE_K];
                let k0 = kb * TILE_K;
                let len = if i < m { TILE_K.min(k - k0.min(k)) } else { 0 };
                if len > 0 && a.cs == 1 {
                    // SAFETY: row i, columns k0 .. k0 + len of the caller's matrix.
                    let src = unsafe { core::slice::from_raw_parts(a.ptr.add(i * a.rs + k0), len) };
                    for (d, &s) in row.iter_mut().zip(src) {
                        *d = bf16_bits(s);
                    }
                } else {
                    for (kk, d) in row.iter_mut().enumerate().take(len) {
                        // SAFETY: i < m, k0 + kk < k.
                        *d = bf16_bits(unsafe { a.at(i, k0 + kk) });
                    }
                }
                row[len..].fill(0);
            }
        }
    }

    /// `rhs` columns `16·t .. 16·t + 16` as `kt` tiles of 16 × 16 bf16 pairs, zero beyond n and k.
    fn pack_rhs_strip_scalar(b: Src, n: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
        let j0 = t * TILE_N;
        let cols = n.saturating_sub(j0).min(TILE_N);
        for kb in 0..kt {
            let tile = &mut out[kb * TILE_LEN..(kb + 1) * TILE_LEN];
            for p in 0..TILE_ROWS {
                let row = &mut tile[p * TILE_K..(p + 1) * TILE_K];
                for e in 0..2 {
                    let kk = kb * TILE_K + 2 * p + e;
                    if kk >= k || cols == 0 {
                        for c in 0..TILE_N {
                            row[2 * c + e] = 0;
                        }
                        continue;
                    }
                    if b.cs == 1 {
                        // SAFETY: row kk, columns j0 .. j0 + cols.
                        let src = unsafe { core::slice::from_raw_parts(b.ptr.add(kk * b.rs + j0), cols) };
                        for (c, &s) in src.iter().enumerate() {
                            row[2 * c + e] = bf16_bits(s);
                        }
                    } else {
                        for c in 0..cols {
                            // SAFETY: kk < k, j0 + c < n.
                            row[2 * c + e] = bf16_bits(unsafe { b.at(kk, j0 + c) });
                        }
                    }
                    for c in cols..TILE_N {
                        row[2 * c + e] = 0;
                    }
                }
            }
        }
    }

    /// `lhs` rows `16·t ..` as bf16 tiles: vectorised where a row or a column of `lhs` is contiguous.
    fn pack_lhs_strip(a: Src, m: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
        // SAFETY: `available` checked AVX-512F/BW/BF16; the reads stay inside m × k.
        match (a.cs, a.rs) {
            (1, _) => unsafe { simd::lhs_rows(a, m, k, t, kt, out) },
            (_, 1) => unsafe { simd::lhs_columns(a, m, k, t, kt, out) },
            _ => pack_lhs_strip_scalar(a, m, k, t, kt, out),
        }
    }

    /// `rhs` columns `16·t ..` as bf16-pair tiles: vectorised where a row or a column of `rhs` is contiguous.
    fn pack_rhs_strip(b: Src, n: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
        // SAFETY: as above, inside k × n.
        match (b.cs, b.rs) {
            (_, 1) => unsafe { simd::rhs_columns(b, n, k, t, kt, out) },
            _ => pack_rhs_strip_scalar(b, n, k, t, kt, out),
        }
    }

    /// The packers on AVX-512: `vcvtne2ps2bf16` rounds 32 floats at a time, a 16 × 16 transpose of bf16 pairs
    /// serves the operands whose contiguous direction is not the tile's.
    pub(crate) mod simd {
        use super::{Src, TILE_K, TILE_LEN, TILE_N, TILE_ROWS};
        use crate::avx512::mask;
        use core::arch::x86_64::*;

        /// 16 floats from `p` (the first `len`), zero past them.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(p: *const f32, len: usize) -> __m512 {
            if len == 0 {
                return _mm512_setzero_ps();
            }
            unsafe { _mm512_maskz_loadu_ps(mask(len), p) }
        }

        /// `lo` and `hi` as 32 bf16 (lo's in lanes 0–15).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bf16")]
        pub(crate) fn to_bf16(lo: __m512, hi: __m512) -> __m512i {
            unsafe { core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
        }

        /// bf16 lanes 0–15 and 16–31 interleaved: lane 2c = lo[c], lane 2c + 1 = hi[c].
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw")]
        pub(crate) fn interleave(v: __m512i) -> __m512i {
            let idx: [u16; 32] = core::array::from_fn(|l| ((l / 2) + 16 * (l % 2)) as u16);
            unsafe { _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.as_ptr().cast()), v) }
        }

        /// Transposes 16 × 16 32-bit lanes in place (four block-exchange stages).
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(crate) fn transpose(r: &mut [__m512i; 16]) {
            for d in [8usize, 4, 2, 1] {
                let lo: [u32; 16] = core::array::from_fn(|j| if j & d == 0 { j as u32 } else { (16 + j - d) as u32 });
                let hi: [u32; 16] = core::array::from_fn(|j| if j & d == 0 { (j + d) as u32 } else { (16 + j) as u32 });
                let (lo, hi) =
                    unsafe { (_mm512_loadu_si512(lo.as_ptr().cast()), _mm512_loadu_si512(hi.as_ptr().cast())) };
                for i in 0..16 {
                    if i & d == 0 {
                        let (a, b) = (r[i], r[i + d]);
                        r[i] = _mm512_permutex2var_epi32(a, lo, b);
                        r[i + d] = _mm512_permutex2var_epi32(a, hi, b);
                    }
                }
            }
        }

        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store(dst: &mut [u16], v: __m512i) {
            debug_assert!(dst.len() >= 32);
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) }
        }

        /// `lhs` with contiguous rows (column stride 1).
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        pub(super) unsafe fn lhs_rows(a: Src, m: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
            for kb in 0..kt {
                let k0 = kb * TILE_K;
                let len = k - k0;
                for r in 0..TILE_ROWS {
                    let i = t * TILE_ROWS + r;
                    let v = if i < m {
                        let p = unsafe { a.ptr.add(i * a.rs + k0) };
                        unsafe { to_bf16(load(p, len.min(16)), load(p.add(16.min(len)), len.saturating_sub(16))) }
                    } else {
                        _mm512_setzero_si512()
                    };
                    unsafe { store(&mut out[kb * TILE_LEN + r * TILE_K..], v) };
                }
            }
        }

        /// `lhs` with contiguous columns (row stride 1): 32 columns of k, two at a time, then transposed.
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        pub(super) unsafe fn lhs_columns(a: Src, m: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
            let i0 = t * TILE_ROWS;
            let rows = m.saturating_sub(i0).min(TILE_ROWS);
            for kb in 0..kt {
                let mut v = [_mm512_setzero_si512(); 16];
                for (q, vq) in v.iter_mut().enumerate() {
                    let kk = kb * TILE_K + 2 * q;
                    let col = |c: usize| {
                        if c < k && rows > 0 {
                            unsafe { load(a.ptr.add(c * a.cs + i0), rows) }
                        } else {
                            _mm512_setzero_ps()
                        }
                    };
                    // Lane i: the pair (lhs[i][kk], lhs[i][kk + 1]).
                    *vq = interleave(to_bf16(col(kk), col(kk + 1)));
                }
                transpose(&mut v);
                for (r, vr) in v.iter().enumerate() {
                    unsafe { store(&mut out[kb * TILE_LEN + r * TILE_K..], *vr) };
                }
            }
        }

        /// `rhs` with contiguous rows (column stride 1), tile rows `kb·16 ..` of every strip: two rows of k at a
        /// time, read along their whole length (sequential reads), each 16 columns interleaved into its strip.
        ///
        /// # Safety
        /// `out` addresses `nt` strips of `kt` tiles; no other task writes tile row `kb` of any strip.
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        pub(super) unsafe fn rhs_rows(b: Src, n: usize, k: usize, kb: usize, kt: usize, out: *mut u16) {
            let nt = n.div_ceil(TILE_N).next_multiple_of(2);
            for p in 0..TILE_ROWS {
                let kk = kb * TILE_K + 2 * p;
                for t in 0..nt {
                    let j0 = t * TILE_N;
                    let cols = n.saturating_sub(j0).min(TILE_N);
                    let row = |r: usize| {
                        if r < k && cols > 0 {
                            unsafe { load(b.ptr.add(r * b.rs + j0), cols) }
                        } else {
                            _mm512_setzero_ps()
                        }
                    };
                    let v = interleave(to_bf16(row(kk), row(kk + 1)));
                    unsafe { _mm512_storeu_si512(out.add((t * kt + kb) * TILE_LEN + p * TILE_K).cast(), v) };
                }
            }
        }

        /// `rhs` with contiguous columns (row stride 1): 32 values of k per column, then transposed.
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        pub(super) unsafe fn rhs_columns(b: Src, n: usize, k: usize, t: usize, kt: usize, out: &mut [u16]) {
            let j0 = t * TILE_N;
            for kb in 0..kt {
                let k0 = kb * TILE_K;
                let len = k - k0;
                let mut v = [_mm512_setzero_si512(); 16];
                for (c, vc) in v.iter_mut().enumerate() {
                    if j0 + c < n {
                        let p = unsafe { b.ptr.add((j0 + c) * b.cs + k0) };
                        // Lane q: the pair (rhs[k0 + 2q][j], rhs[k0 + 2q + 1][j]).
                        *vc =
                            unsafe { to_bf16(load(p, len.min(16)), load(p.add(16.min(len)), len.saturating_sub(16))) };
                    }
                }
                transpose(&mut v);
                for (p, vp) in v.iter().enumerate() {
                    unsafe { store(&mut out[kb * TILE_LEN + p * TILE_K..], *vp) };
                }
            }
        }
    }

    /// The 32 × 32 block `[a0; a1] · [b0 b1]` over `kt` tiles into `c`, row-major (through [`block_into`]).
    ///
    /// # Safety
    /// Tiles configured on this thread; each operand pointer addresses `kt` consecutive tiles.
    #[inline(always)]
    unsafe fn block(a0: *const u16, a1: *const u16, b0: *const u16, b1: *const u16, kt: usize, c: &mut [f32; 1024]) {
        // SAFETY: the caller's contract; `c` is 32 rows of 32 f32 values, 128 bytes apart.
        unsafe { block_into(a0, a1, b0, b1, kt, c.as_mut_ptr(), 2 * TILE_N * 4, false) }
    }

    /// Four 16 × 16 f32 accumulators (`a0·b0`, `a0·b1` / `a1·b0`, `a1·b1`) over `kt` tiles, started from
    /// (`accumulate`) or stored straight into the 32 × 32 block at `c`, whose rows are `row_bytes` apart (row-major
    /// f32, the block wholly inside): no copy through a buffer, and the sum onto the destination happens in the tiles.
    ///
    /// # Safety
    /// Tiles configured on this thread; each operand pointer addresses `kt` consecutive tiles; `c` addresses 32 rows
    /// of 32 f32 values, `row_bytes` apart, that no other task touches.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block_into(
        a0: *const u16,
        a1: *const u16,
        b0: *const u16,
        b1: *const u16,
        kt: usize,
        c: *mut f32,
        row_bytes: usize,
        accumulate: bool,
    ) {
        // The lower two accumulators start 16 rows down.
        let c_low = unsafe { c.cast::<u8>().add(TILE_ROWS * row_bytes) };
        unsafe {
            asm!(
                "test {acc}, {acc}",
                "jz 3f",
                "tileloadd tmm0, [{c} + {s}*1]",
                "tileloadd tmm1, [{c} + {s}*1 + 64]",
                "tileloadd tmm2, [{cl} + {s}*1]",
                "tileloadd tmm3, [{cl} + {s}*1 + 64]",
                "jmp 2f",
                "3:",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a0} + {t}*1]",
                "tileloadd tmm6, [{b0} + {t}*1]",
                "tileloadd tmm5, [{a1} + {t}*1]",
                "tileloadd tmm7, [{b1} + {t}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 1024",
                "add {a1}, 1024",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {kt}",
                "jnz 2b",
                "tilestored [{c} + {s}*1], tmm0",
                "tilestored [{c} + {s}*1 + 64], tmm1",
                "tilestored [{cl} + {s}*1], tmm2",
                "tilestored [{cl} + {s}*1 + 64], tmm3",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                kt = inout(reg) kt => _,
                acc = in(reg) accumulate as usize,
                c = in(reg) c,
                cl = in(reg) c_low,
                s = in(reg) row_bytes,
                t = in(reg) 64usize,
                options(nostack),
            );
        }
    }

    /// The destination, written by disjoint 32 × 32 blocks from several tasks.
    #[derive(Clone, Copy)]
    struct Dst {
        ptr: *mut f32,
        cs: usize,
        rs: usize,
        m: usize,
        n: usize,
        accumulate: bool,
    }
    unsafe impl Send for Dst {}
    unsafe impl Sync for Dst {}

    impl Dst {
        /// The block whose top-left tile is (`ti`, `tj`), where [`block_into`] can write it: row-major and wholly
        /// inside the destination.
        fn direct(&self, ti: usize, tj: usize) -> Option<*mut f32> {
            let (i0, j0) = (ti * TILE_ROWS, tj * TILE_N);
            (self.cs == 1 && i0 + 2 * TILE_ROWS <= self.m && j0 + 2 * TILE_N <= self.n)
                // SAFETY: (i0, j0) lies inside the m × n destination.
                .then(|| unsafe { self.ptr.add(i0 * self.rs + j0) })
        }

        /// Writes (or adds) the block whose top-left tile is (`ti`, `tj`) from `c` (32 × 32, row-major), clipped at
        /// the edges.
        ///
        /// # Safety
        /// No other task writes this block.
        unsafe fn store(&self, ti: usize, tj: usize, c: &[f32; 1024]) {
            let (i0, j0) = (ti * TILE_ROWS, tj * TILE_N);
            let rows = self.m.saturating_sub(i0).min(2 * TILE_ROWS);
            let cols = self.n.saturating_sub(j0).min(2 * TILE_N);
            for r in 0..rows {
                let src = &c[r * 2 * TILE_N..r * 2 * TILE_N + cols];
                // SAFETY: (i0 + r, j0 + c) lies inside the m × n destination.
                let base = unsafe { self.ptr.add((i0 + r) * self.rs + j0 * self.cs) };
                if self.cs == 1 {
                    let d = unsafe { core::slice::from_raw_parts_mut(base, cols) };
                    if self.accumulate {
                        d.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    } else {
                        d.copy_from_slice(src);
                    }
                } else {
                    for (c, &s) in src.iter().enumerate() {
                        let d = unsafe { &mut *base.add(c * self.cs) };
                        *d = if self.accumulate { *d + s } else { s };
                    }
                }
            }
        }
    }

    /// `lhs` (m × k) packed into bf16 tiles once, for several products with it ([`gemm_packed`]).
    pub struct PackedLhs {
        tiles: Vec<u16>,
        m: usize,
        k: usize,
    }

    impl PackedLhs {
        /// Packs `lhs` (m × k, strides (column, row) in elements), on rayon's pool where `parallel`.
        ///
        /// # Safety
        /// [`super::available`] must have returned true; `lhs` must address an m × k matrix of these strides.
        pub unsafe fn new(m: usize, k: usize, lhs: *const f32, (cs, rs): (usize, usize), parallel: bool) -> Self {
            let kt = k.div_ceil(TILE_K);
            let mt = m.div_ceil(TILE_ROWS).next_multiple_of(2);
            let strip = kt * TILE_LEN;
            let a = Src { ptr: lhs, cs, rs };
            // Every packer writes each value of its strips, padding included, so the buffer starts unwritten.
            let mut tiles: Vec<u16> = Vec::with_capacity(mt * strip);
            // SAFETY: u16 has no invalid bit patterns and nothing reads a value before the packers write it.
            #[allow(clippy::uninit_vec)]
            unsafe {
                tiles.set_len(mt * strip)
            };
            if strip > 0 {
                if parallel {
                    tiles.par_chunks_mut(strip).enumerate().for_each(|(t, s)| pack_lhs_strip(a, m, k, t, kt, s));
                } else {
                    tiles.chunks_mut(strip).enumerate().for_each(|(t, s)| pack_lhs_strip(a, m, k, t, kt, s));
                }
            }
            Self { tiles, m, k }
        }
    }

    /// `dst (m × n) = [dst +] lhs (m × k) · rhs (k × n)` with bf16 operands and f32 accumulation; strides are
    /// (column, row) in elements. Runs on rayon's pool with `threads` tasks' worth of splitting (1: this thread).
    ///
    /// # Safety
    /// [`super::available`] must have returned true. The pointers must address matrices of these shapes and strides;
    /// `dst` must not overlap `lhs` or `rhs`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        (m, n, k): (usize, usize, usize),
        dst: *mut f32,
        dst_strides: (usize, usize),
        accumulate: bool,
        lhs: *const f32,
        lhs_strides: (usize, usize),
        rhs: *const f32,
        rhs_strides: (usize, usize),
        threads: usize,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe {
            let a = PackedLhs::new(m, k, lhs, lhs_strides, threads > 1);
            gemm_packed(&a, n, dst, dst_strides, accumulate, rhs, rhs_strides, threads)
        }
    }

    /// [`gemm`] with `lhs` packed beforehand.
    ///
    /// # Safety
    /// As [`gemm`], for the m × k `lhs` that `a` was packed from.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_packed(
        a: &PackedLhs,
        n: usize,
        dst: *mut f32,
        dst_strides: (usize, usize),
        accumulate: bool,
        rhs: *const f32,
        (rhs_cs, rhs_rs): (usize, usize),
        threads: usize,
    ) {
        let (k, kt) = (a.k, a.k.div_ceil(TILE_K));
        let b = Src { ptr: rhs, cs: rhs_cs, rs: rhs_rs };
        // `rhs` with contiguous rows is packed by tile rows (sequential reads); otherwise by strips.
        // SAFETY (both packers): tile row kb, or strip t, is written by its call only; the reads stay inside k × n.
        let by_rows = |kb: usize, out: *mut u16| unsafe { simd::rhs_rows(b, n, k, kb, kt, out) };
        let by_strips = |t: usize, s: &mut [u16]| pack_rhs_strip(b, n, k, t, kt, s);
        let tiles = if b.cs == 1 { RhsTiles::TileRows(&by_rows) } else { RhsTiles::Strips(&by_strips) };
        // SAFETY: the caller's contract; the packers write every value of the tiles.
        unsafe { gemm_packed_by(a, n, dst, dst_strides, accumulate, tiles, threads) }
    }

    /// Where [`gemm_packed_by`] gets `rhs` (k × n) as bf16-pair tiles: strip `t` holds columns `16·t .. 16·t + 16`
    /// as `kt = ⌈k / 32⌉` consecutive tiles of 512 bf16 values (row `p` of tile `kb`: rows `32·kb + 2p` and
    /// `32·kb + 2p + 1` of those columns, interleaved), `⌈n / 16⌉` strips rounded up to an even count. The packer
    /// writes every value of its part, zero beyond k and n.
    pub enum RhsTiles<'a> {
        /// `f(t, strip)` writes strip `t` (`kt` tiles).
        Strips(&'a (dyn Fn(usize, &mut [u16]) + Sync)),
        /// `f(kb, tiles)` writes tile `kb` of every strip into the whole buffer at `tiles` (strip `t`'s tile `kb`
        /// starts at `(t·kt + kb)·TILE_LEN`), and nothing else.
        TileRows(&'a (dyn Fn(usize, *mut u16) + Sync)),
    }

    /// [`gemm_packed`] with `rhs` packed by the caller's packer ([`RhsTiles`]): `dst (m × n) = [dst +] lhs · rhs`.
    ///
    /// # Safety
    /// As [`gemm`], for the m × k `lhs` that `a` was packed from; the packer must write every value it is given.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_packed_by(
        a: &PackedLhs,
        n: usize,
        dst: *mut f32,
        (dst_cs, dst_rs): (usize, usize),
        accumulate: bool,
        rhs: RhsTiles<'_>,
        threads: usize,
    ) {
        let (m, k) = (a.m, a.k);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    for j in 0..n {
                        unsafe { *dst.add(i * dst_rs + j * dst_cs) = 0.0 };
                    }
                }
            }
            return;
        }
        let kt = k.div_ceil(TILE_K);
        // Whole pairs of tiles on both sides.
        let mt = m.div_ceil(TILE_ROWS).next_multiple_of(2);
        let nt = n.div_ceil(TILE_N).next_multiple_of(2);
        let strip = kt * TILE_LEN;
        // Every packer writes each value of its strips, padding included, so the buffer starts unwritten.
        let mut pb: Vec<u16> = Vec::with_capacity(nt * strip);
        // SAFETY: u16 has no invalid bit patterns and nothing reads a value before the packer writes it.
        #[allow(clippy::uninit_vec)]
        unsafe {
            pb.set_len(nt * strip)
        };
        let parallel = threads > 1;
        match rhs {
            RhsTiles::TileRows(f) => {
                let pb_ptr = Out(pb.as_mut_ptr());
                // `out` takes the whole `Out` (Send), not its raw pointer field.
                let row = |kb: usize| {
                    let out = pb_ptr;
                    f(kb, out.0)
                };
                if parallel {
                    (0..kt).into_par_iter().for_each(row)
                } else {
                    (0..kt).for_each(row)
                }
            }
            RhsTiles::Strips(f) if parallel => pb.par_chunks_mut(strip).enumerate().for_each(|(t, s)| f(t, s)),
            RhsTiles::Strips(f) => pb.chunks_mut(strip).enumerate().for_each(|(t, s)| f(t, s)),
        }
        let d = Dst { ptr: dst, cs: dst_cs, rs: dst_rs, m, n, accumulate };
        let (pa, pb) = (&a.tiles[..], &pb[..]);
        // One task per pair of tile strips along the longer side; the other side is walked inside it.
        let (outer, inner) = (mt.max(nt) / 2, mt.min(nt) / 2);
        let rows_outer = mt >= nt;
        // `c` holds an edge block on its way out (one per task: zeroing 4 KiB per strip pair cost ~1 % of a step).
        let run = |o: usize, c: &mut [f32; 1024]| {
            for i in 0..inner {
                let (bi, bj) = if rows_outer { (o, i) } else { (i, o) };
                let a0 = pa[2 * bi * strip..].as_ptr();
                let a1 = pa[(2 * bi + 1) * strip..].as_ptr();
                let b0 = pb[2 * bj * strip..].as_ptr();
                let b1 = pb[(2 * bj + 1) * strip..].as_ptr();
                // SAFETY: tiles configured by `with_tiles`; each strip holds kt tiles; blocks are disjoint.
                unsafe {
                    if let Some(at) = d.direct(2 * bi, 2 * bj) {
                        block_into(a0, a1, b0, b1, kt, at, d.rs * 4, d.accumulate);
                    } else {
                        block(a0, a1, b0, b1, kt, c);
                        d.store(2 * bi, 2 * bj, c);
                    }
                }
            }
        };
        if parallel && outer > 1 {
            let per = outer.div_ceil(threads * 4).max(1);
            (0..outer.div_ceil(per)).into_par_iter().for_each(|chunk| {
                let mut c = [0f32; 1024];
                with_tiles(|| (chunk * per..((chunk + 1) * per).min(outer)).for_each(|o| run(o, &mut c)))
            });
        } else {
            let mut c = [0f32; 1024];
            with_tiles(|| (0..outer).for_each(|o| run(o, &mut c)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        // The same bf16 rounding of the operands, accumulated in f64.
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += bf16_to_f32(bf16_bits(a[i * k + p])) as f64 * bf16_to_f32(bf16_bits(b[p * n + j])) as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_to_f32(bf16_bits(-2.5)), -2.5);
        assert!(bf16_to_f32(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(bf16_bits(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn amx_products_match_bf16_rounded_operands_on_every_edge_shape() {
        if !available() {
            eprintln!("skipped: this CPU or OS has no AMX bf16 tiles");
            return;
        }
        for &(m, n, k) in
            &[(1, 1, 1), (16, 16, 32), (33, 17, 31), (64, 200, 75), (7, 300, 600), (130, 5, 64), (96, 64, 40)]
        {
            let a = data(m * k, (m * 7 + k) as u32);
            let b = data(k * n, (n * 13 + k) as u32);
            let want = reference(m, n, k, &a, &b);
            for threads in [1, 2] {
                // Row-major operands, then transposed views of the same numbers, plain and accumulating.
                let mut c = vec![0.5f32; m * n];
                unsafe {
                    gemm((m, n, k), c.as_mut_ptr(), (1, n), false, a.as_ptr(), (1, k), b.as_ptr(), (1, n), threads)
                };
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}×{n}×{k}: {x} vs {y}");
                }
                // Accumulated onto a row-major destination (whole 32 × 32 blocks are summed in the tiles).
                let mut c = vec![-0.25f32; m * n];
                unsafe {
                    gemm((m, n, k), c.as_mut_ptr(), (1, n), true, a.as_ptr(), (1, k), b.as_ptr(), (1, n), threads)
                };
                for (x, y) in c.iter().zip(&want) {
                    let y = y - 0.25;
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}×{n}×{k} accumulated: {x} vs {y}");
                }
                let at: Vec<f32> = (0..k * m).map(|q| a[(q % m) * k + q / m]).collect(); // k × m
                let bt: Vec<f32> = (0..n * k).map(|q| b[(q % k) * n + q / k]).collect(); // n × k
                let mut ct = vec![1.0f32; m * n]; // column-major destination, accumulated onto ones
                unsafe {
                    gemm((m, n, k), ct.as_mut_ptr(), (m, 1), true, at.as_ptr(), (m, 1), bt.as_ptr(), (k, 1), threads)
                };
                for i in 0..m {
                    for j in 0..n {
                        let (x, y) = (ct[j * m + i], want[i * n + j] + 1.0);
                        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}×{n}×{k} transposed: {x} vs {y}");
                    }
                }
            }
        }
    }
}
