//! Which instruction set the convolutions' f32 GEMMs run on, chosen once per process.
//!
//! The `gemm` crate picks its kernels by CPU feature alone: built with AVX-512 kernels it uses them on every
//! CPU with AVX-512F. Measured, that is the right choice on an Intel Xeon (ResNet-34's training step 11–20 %
//! shorter than with the AVX2 kernels) and the wrong one on an AMD EPYC (training 20–30 % slower), so this
//! crate calls the AVX2 or the AVX-512 kernels itself:
//!
//! - [`GemmChoice::Auto`] (the default): AVX-512 on an Intel CPU with AVX-512F, AVX2 + FMA on any other x86
//!   CPU that has them, and otherwise the `gemm` crate's own choice;
//! - [`GemmChoice::Avx2`] / [`GemmChoice::Avx512`]: that instruction set, or an error where the CPU lacks it;
//! - [`GemmChoice::AmxBf16`]: mixed precision on Intel AMX tiles (operands rounded to bfloat16, sums in f32;
//!   [`crate::amx`]). It changes the numerics, so [`GemmChoice::Auto`] never takes it.
//!
//! Only the GEMMs of this crate's convolutions follow the choice; burn's own matrix products (the models'
//! small linear heads) keep the `gemm` crate's dispatch.

use core::fmt;
use core::str::FromStr;
use core::sync::atomic::{AtomicU8, Ordering};

/// What the user asked for (`PNEUMOSCOPE_GEMM=auto|avx2|avx512` in the binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GemmChoice {
    #[default]
    Auto,
    Avx2,
    Avx512,
    AmxBf16,
}

impl FromStr for GemmChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "avx2" => Ok(Self::Avx2),
            "avx512" | "avx-512" => Ok(Self::Avx512),
            "amx-bf16" | "amx_bf16" | "amxbf16" => Ok(Self::AmxBf16),
            other => Err(format!("unknown GEMM instruction set {other:?}: expected auto, avx2, avx512 or amx-bf16")),
        }
    }
}

/// The kernels the convolutions' f32 GEMMs run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmIsa {
    /// The `gemm` crate's own dispatch (no AVX2 + FMA, or not an x86 CPU).
    Library,
    /// The `gemm` crate's AVX2 + FMA kernels.
    Avx2,
    /// The `gemm` crate's AVX-512F kernels.
    Avx512,
    /// bf16 operands on AMX tiles, f32 sums ([`crate::amx`]).
    AmxBf16,
}

impl fmt::Display for GemmIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Library => "gemm's own dispatch",
            Self::Avx2 => "AVX2",
            Self::Avx512 => "AVX-512",
            Self::AmxBf16 => "AMX bf16",
        })
    }
}

/// What this CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub intel: bool,
    pub avx2: bool,
    pub avx512: bool,
    /// AMX-TILE, AMX-BF16 and AVX-512 BF16, with the tile state saved by the OS (the process asks for it only
    /// when AMX is selected).
    pub amx_bf16: bool,
}

impl Cpu {
    /// This machine's CPU.
    pub fn detect() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            let intel = raw_cpuid::CpuId::new().get_vendor_info().is_some_and(|v| v.as_str() == "GenuineIntel");
            Self {
                intel,
                avx2: kernels::avx2_available(),
                avx512: kernels::avx512_available(),
                amx_bf16: crate::amx::supported(),
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            Self { intel: false, avx2: false, avx512: false, amx_bf16: false }
        }
    }
}

/// The instruction set `choice` means on `cpu`, or why it cannot run there.
pub fn resolve(choice: GemmChoice, cpu: Cpu) -> Result<GemmIsa, String> {
    match choice {
        GemmChoice::Auto if cpu.avx512 && cpu.intel => Ok(GemmIsa::Avx512),
        GemmChoice::Auto if cpu.avx2 => Ok(GemmIsa::Avx2),
        GemmChoice::Auto => Ok(GemmIsa::Library),
        GemmChoice::Avx2 if cpu.avx2 => Ok(GemmIsa::Avx2),
        GemmChoice::Avx2 => Err("this CPU has no AVX2 + FMA".into()),
        GemmChoice::Avx512 if cpu.avx512 => Ok(GemmIsa::Avx512),
        GemmChoice::Avx512 => Err("this CPU has no AVX-512F".into()),
        GemmChoice::AmxBf16 if cpu.amx_bf16 => Ok(GemmIsa::AmxBf16),
        GemmChoice::AmxBf16 => Err("this CPU (or its OS) offers no AMX bf16 tiles".into()),
    }
}

const UNSET: u8 = 0;
static SELECTED: AtomicU8 = AtomicU8::new(UNSET);

fn encode(isa: GemmIsa) -> u8 {
    match isa {
        GemmIsa::Library => 1,
        GemmIsa::Avx2 => 2,
        GemmIsa::Avx512 => 3,
        GemmIsa::AmxBf16 => 4,
    }
}

fn decode(v: u8) -> Option<GemmIsa> {
    match v {
        1 => Some(GemmIsa::Library),
        2 => Some(GemmIsa::Avx2),
        3 => Some(GemmIsa::Avx512),
        4 => Some(GemmIsa::AmxBf16),
        _ => None,
    }
}

/// Sets the process's choice; returns what it resolved to, or why this CPU cannot run it (nothing changes then).
pub fn select(choice: GemmChoice) -> Result<GemmIsa, String> {
    let isa = resolve(choice, Cpu::detect())?;
    if isa == GemmIsa::AmxBf16 && !crate::amx::available() {
        return Err("Linux did not grant this process AMX's tile state (arch_prctl XCOMP_PERM)".into());
    }
    SELECTED.store(encode(isa), Ordering::Relaxed);
    Ok(isa)
}

/// The instruction set in use: the last [`select`]ed one, or [`GemmChoice::Auto`]'s on this CPU.
pub fn current() -> GemmIsa {
    if let Some(isa) = decode(SELECTED.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = resolve(GemmChoice::Auto, Cpu::detect()).unwrap_or(GemmIsa::Library);
    SELECTED.store(encode(isa), Ordering::Relaxed);
    isa
}

/// Whether the process multiplies on AMX tiles ([`GemmIsa::AmxBf16`]): the convolutions choose their paths by it.
pub fn on_amx_tiles() -> bool {
    current() == GemmIsa::AmxBf16
}

/// An f32 `lhs` packed once for several [`gemm_f32_packed`] products, where the [`current`] instruction set packs
/// its operands into a form of its own (AMX bf16 tiles); [`pack_lhs_f32`] gives none elsewhere.
pub struct PackedLhs {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    amx: crate::amx::PackedLhs,
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    _none: core::convert::Infallible,
}

/// `lhs` (m × k, strides (column, row) non-negative) packed for [`gemm_f32_packed`], on this thread; `None` unless
/// the [`current`] instruction set is [`GemmIsa::AmxBf16`] (the others read their operands in place).
///
/// # Safety
/// `lhs` must address an m × k matrix of these strides.
pub unsafe fn pack_lhs_f32(m: usize, k: usize, lhs: *const f32, strides: (usize, usize)) -> Option<PackedLhs> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if current() == GemmIsa::AmxBf16 {
        // SAFETY: the caller's contract; only `select` sets AMX, and only after `amx::available` said yes.
        return Some(PackedLhs { amx: unsafe { crate::amx::PackedLhs::new(m, k, lhs, strides, false) } });
    }
    let _ = (m, k, lhs, strides);
    None
}

/// [`gemm_f32`] with `lhs` packed by [`pack_lhs_f32`]: `dst (m × n) = [dst +] lhs · rhs`.
///
/// # Safety
/// As [`gemm_f32`], for the m × k matrix `lhs` was packed from, which must still hold the same values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f32_packed(
    lhs: &PackedLhs,
    n: usize,
    dst: *mut f32,
    dst_strides: (usize, usize),
    accumulate: bool,
    rhs: *const f32,
    rhs_strides: (usize, usize),
    parallelism: gemm::Parallelism,
) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let threads = match parallelism {
            gemm::Parallelism::Rayon(t) => t.max(1),
            _ => 1,
        };
        // SAFETY: the caller's contract; a packed lhs exists only where AMX was selected and granted.
        unsafe { crate::amx::gemm_packed(&lhs.amx, n, dst, dst_strides, accumulate, rhs, rhs_strides, threads) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = (n, dst, dst_strides, accumulate, rhs, rhs_strides, parallelism);
        match lhs._none {}
    }
}

/// `dst (m × n) = [dst +] lhs (m × k) · rhs (k × n)`, every stride (column, row) non-negative, on the
/// [`current`] instruction set. Returns `false`, computing nothing, when that is [`GemmIsa::Library`]: the
/// caller then calls `gemm::gemm`, as it does for other element types.
///
/// # Safety
/// The pointers must address matrices of these shapes and strides; `dst` must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (dst_cs, dst_rs): (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: *const f32,
    (rhs_cs, rhs_rs): (usize, usize),
    parallelism: gemm::Parallelism,
) -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        let isa = current();
        if isa == GemmIsa::Library {
            return false;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if isa == GemmIsa::AmxBf16 {
            let threads = match parallelism {
                gemm::Parallelism::Rayon(t) => t.max(1),
                _ => 1,
            };
            // SAFETY: the caller's contract; only `select` sets AMX, and only after `amx::available` said yes.
            unsafe {
                crate::amx::gemm(
                    (m, n, k),
                    dst,
                    (dst_cs, dst_rs),
                    accumulate,
                    lhs,
                    (lhs_cs, lhs_rs),
                    rhs,
                    (rhs_cs, rhs_rs),
                    threads,
                )
            };
            return true;
        }
        // The microkernels write column-major tiles: a row-major destination is computed as its transpose,
        // dstᵀ = rhsᵀ · lhsᵀ (what `gemm::gemm` does before its own dispatch).
        let (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) = if dst_cs < dst_rs {
            (n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs)
        } else {
            (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs)
        };
        let args = kernels::Args {
            m,
            n,
            k,
            dst,
            dst_cs: dst_cs as isize,
            dst_rs: dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs: lhs_cs as isize,
            lhs_rs: lhs_rs as isize,
            rhs,
            rhs_cs: rhs_cs as isize,
            rhs_rs: rhs_rs as isize,
            parallelism,
        };
        // SAFETY: the caller's contract; `current` only names an instruction set this CPU has.
        unsafe {
            match isa {
                GemmIsa::Avx512 => kernels::avx512(args),
                _ => kernels::avx2(args),
            }
        }
        true
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        let _ = (m, n, k, dst, dst_cs, dst_rs, accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, parallelism);
        false
    }
}

/// The `gemm` crate's f32 kernels for one instruction set each, called through its generic driver with that
/// set's microkernel tables (gemm-f32's `microkernel::{fma, avx512f}::f32`).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod kernels {
    use gemm_common::gemm::gemm_basic_generic;
    use gemm_common::simd::{V3, V4};
    use gemm_f32::microkernel::{avx512f, fma};

    /// A column-major destination's GEMM, after [`super::gemm_f32`]'s transposition.
    pub struct Args {
        pub m: usize,
        pub n: usize,
        pub k: usize,
        pub dst: *mut f32,
        pub dst_cs: isize,
        pub dst_rs: isize,
        pub accumulate: bool,
        pub lhs: *const f32,
        pub lhs_cs: isize,
        pub lhs_rs: isize,
        pub rhs: *const f32,
        pub rhs_cs: isize,
        pub rhs_rs: isize,
        pub parallelism: gemm::Parallelism,
    }

    pub fn avx2_available() -> bool {
        V3::try_new().is_some()
    }

    pub fn avx512_available() -> bool {
        V4::try_new().is_some()
    }

    /// Lanes of an f32 vector: 8 in AVX2, 16 in AVX-512.
    const AVX2_LANES: usize = 8;
    const AVX512_LANES: usize = 16;

    /// `gemm_basic_generic` with one instruction set's SIMD token, vector width and microkernel tables.
    macro_rules! gemm_on {
        ($simd:expr, $lanes:expr, $ukr:ident, $a:expr) => {{
            let a = $a;
            gemm_basic_generic::<
                _,
                f32,
                $lanes,
                { $ukr::f32::MR_DIV_N * $lanes },
                { $ukr::f32::NR },
                { $ukr::f32::MR_DIV_N },
                { $ukr::f32::H_M },
                { $ukr::f32::H_N },
            >(
                $simd,
                a.m,
                a.n,
                a.k,
                a.dst,
                a.dst_cs,
                a.dst_rs,
                a.accumulate,
                a.lhs,
                a.lhs_cs,
                a.lhs_rs,
                a.rhs,
                a.rhs_cs,
                a.rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                |x, y, z| x * y + z,
                &$ukr::f32::UKR,
                &$ukr::f32::H_UKR,
                false,
                a.parallelism,
            )
        }};
    }

    /// # Safety
    /// [`super::gemm_f32`]'s contract, on a CPU with AVX2 + FMA.
    pub unsafe fn avx2(a: Args) {
        let Some(simd) = V3::try_new() else { unreachable_isa() };
        unsafe { gemm_on!(simd, AVX2_LANES, fma, a) }
    }

    /// # Safety
    /// [`super::gemm_f32`]'s contract, on a CPU with AVX-512F.
    pub unsafe fn avx512(a: Args) {
        let Some(simd) = V4::try_new() else { unreachable_isa() };
        unsafe { gemm_on!(simd, AVX512_LANES, avx512f, a) }
    }

    /// [`super::current`] only resolves to instruction sets the CPU has.
    #[cold]
    fn unreachable_isa() -> ! {
        unreachable!("GEMM instruction set selected on a CPU without it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL_512: Cpu = Cpu { intel: true, avx2: true, avx512: true, amx_bf16: false };
    const INTEL_AMX: Cpu = Cpu { intel: true, avx2: true, avx512: true, amx_bf16: true };
    const AMD_512: Cpu = Cpu { intel: false, avx2: true, avx512: true, amx_bf16: false };
    const AVX2_ONLY: Cpu = Cpu { intel: true, avx2: true, avx512: false, amx_bf16: false };
    const NEITHER: Cpu = Cpu { intel: false, avx2: false, avx512: false, amx_bf16: false };

    #[test]
    fn auto_takes_avx512_on_intel_only() {
        assert_eq!(resolve(GemmChoice::Auto, INTEL_512), Ok(GemmIsa::Avx512));
        // bf16 changes the numerics: only asked for, never automatic.
        assert_eq!(resolve(GemmChoice::Auto, INTEL_AMX), Ok(GemmIsa::Avx512));
        assert_eq!(resolve(GemmChoice::Auto, AMD_512), Ok(GemmIsa::Avx2));
        assert_eq!(resolve(GemmChoice::Auto, AVX2_ONLY), Ok(GemmIsa::Avx2));
        assert_eq!(resolve(GemmChoice::Auto, NEITHER), Ok(GemmIsa::Library));
    }

    #[test]
    fn an_explicit_choice_the_cpu_lacks_is_an_error() {
        assert_eq!(resolve(GemmChoice::Avx512, AMD_512), Ok(GemmIsa::Avx512));
        assert_eq!(resolve(GemmChoice::Avx2, AMD_512), Ok(GemmIsa::Avx2));
        assert!(resolve(GemmChoice::Avx512, AVX2_ONLY).unwrap_err().contains("AVX-512F"));
        assert!(resolve(GemmChoice::Avx2, NEITHER).unwrap_err().contains("AVX2"));
        assert_eq!(resolve(GemmChoice::AmxBf16, INTEL_AMX), Ok(GemmIsa::AmxBf16));
        assert!(resolve(GemmChoice::AmxBf16, INTEL_512).unwrap_err().contains("AMX"));
    }

    #[test]
    fn choices_parse_and_bad_ones_name_the_allowed_values() {
        assert_eq!("AVX512".parse::<GemmChoice>(), Ok(GemmChoice::Avx512));
        assert_eq!(" avx2 ".parse::<GemmChoice>(), Ok(GemmChoice::Avx2));
        assert_eq!("auto".parse::<GemmChoice>(), Ok(GemmChoice::Auto));
        assert_eq!("AMX-BF16".parse::<GemmChoice>(), Ok(GemmChoice::AmxBf16));
        assert!("sse".parse::<GemmChoice>().unwrap_err().contains("auto, avx2, avx512 or amx-bf16"));
    }

    /// Plain triple loop, f64 accumulation.
    fn reference(m: usize, n: usize, k: usize, lhs: &[f32], rhs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| lhs[i * k + p] as f64 * rhs[p * n + j] as f64).sum();
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    /// Every instruction set this CPU has gives the same products as a plain loop, for row-major and
    /// column-major destinations, with and without accumulation, at sizes that leave partial tiles.
    #[test]
    fn each_available_instruction_set_multiplies_correctly() {
        let cpu = Cpu::detect();
        let mut isas = vec![];
        if cpu.avx2 {
            isas.push(GemmIsa::Avx2);
        }
        if cpu.avx512 {
            isas.push(GemmIsa::Avx512);
        }
        let before = current();
        for &(m, n, k) in &[(1, 1, 1), (7, 13, 5), (33, 70, 27), (64, 196, 288)] {
            let lhs: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let rhs: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 89) as f32 - 44.0) / 22.0).collect();
            let want = reference(m, n, k, &lhs, &rhs);
            for &isa in &isas {
                SELECTED.store(encode(isa), Ordering::Relaxed);
                // Row-major destination (column stride 1), row-major operands.
                let mut row = vec![1.0f32; m * n];
                let ran = unsafe {
                    gemm_f32(
                        (m, n, k),
                        row.as_mut_ptr(),
                        (1, n),
                        true,
                        lhs.as_ptr(),
                        (1, k),
                        rhs.as_ptr(),
                        (1, n),
                        gemm::Parallelism::None,
                    )
                };
                assert!(ran, "{isa} was selected but gemm_f32 left the work to the caller");
                // Column-major destination: element (i, j) at j·m + i.
                let mut col = vec![0.0f32; m * n];
                let ran = unsafe {
                    gemm_f32(
                        (m, n, k),
                        col.as_mut_ptr(),
                        (m, 1),
                        false,
                        lhs.as_ptr(),
                        (1, k),
                        rhs.as_ptr(),
                        (1, n),
                        gemm::Parallelism::Rayon(2),
                    )
                };
                assert!(ran, "{isa} was selected but gemm_f32 left the work to the caller");
                for i in 0..m {
                    for j in 0..n {
                        let w = want[i * n + j];
                        let tol = 1e-4 * (1.0 + w.abs()) * k as f32;
                        assert!((row[i * n + j] - (w + 1.0)).abs() <= tol, "{isa} {m}×{n}×{k} row ({i},{j})");
                        assert!((col[j * m + i] - w).abs() <= tol, "{isa} {m}×{n}×{k} col ({i},{j})");
                    }
                }
            }
        }
        // gemm's own dispatch is left to the caller.
        SELECTED.store(encode(GemmIsa::Library), Ordering::Relaxed);
        let mut one = [0.0f32];
        let ran = unsafe {
            gemm_f32(
                (1, 1, 1),
                one.as_mut_ptr(),
                (1, 1),
                false,
                [2.0f32].as_ptr(),
                (1, 1),
                [3.0f32].as_ptr(),
                (1, 1),
                gemm::Parallelism::None,
            )
        };
        assert!(!ran && one[0] == 0.0, "gemm's own dispatch must be left to the caller");
        SELECTED.store(encode(before), Ordering::Relaxed);
    }
}
