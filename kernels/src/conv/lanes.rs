//! The Winograd transforms' element-wise steps over rows of `f32`, on AVX-512 where the CPU has it.
//!
//! The crate is built for the x86-64 baseline (SSE2), so plain loops run 4 lanes at a time, and the transforms'
//! short rows (a tile row is 4–28 tiles in ResNet-34) fell mostly to their scalar remainders. Here each step runs
//! 16 lanes at a time with masked loads and stores for the last partial vector, chosen at run time; elsewhere (and
//! without `std`, which the detection needs) the same arithmetic runs as plain loops. Each output element is the
//! same single operation in either path, so results are identical to the last bit.

/// `Bᵀ x` element-wise over four rows: `(x0 − x2, x1 + x2, x2 − x1, x1 − x3)`.
pub fn bt([x0, x1, x2, x3]: [&[f32]; 4], [y0, y1, y2, y3]: [&mut [f32]; 4]) {
    let n = y0.len();
    assert!(x0.len() >= n && x1.len() >= n && x2.len() >= n && x3.len() >= n);
    assert!(y1.len() >= n && y2.len() >= n && y3.len() >= n);
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if crate::avx512::available() {
        // SAFETY: AVX-512F is present; every row holds at least n elements (asserted).
        unsafe { x86::bt([x0, x1, x2, x3], [y0, y1, y2, y3], n) };
        return;
    }
    for j in 0..n {
        y0[j] = x0[j] - x2[j];
        y1[j] = x1[j] + x2[j];
        y2[j] = x2[j] - x1[j];
        y3[j] = x1[j] - x3[j];
    }
}

/// `A x` element-wise over two rows: `(x0, x0 + x1, x0 − x1, −x1)`.
pub fn a([x0, x1]: [&[f32]; 2], [y0, y1, y2, y3]: [&mut [f32]; 4]) {
    let n = y0.len();
    assert!(x0.len() >= n && x1.len() >= n);
    assert!(y1.len() >= n && y2.len() >= n && y3.len() >= n);
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if crate::avx512::available() {
        // SAFETY: as in `bt`.
        unsafe { x86::a([x0, x1], [y0, y1, y2, y3], n) };
        return;
    }
    for j in 0..n {
        y0[j] = x0[j];
        y1[j] = x0[j] + x1[j];
        y2[j] = x0[j] - x1[j];
        y3[j] = -x1[j];
    }
}

/// `Aᵀ x` element-wise over four rows: `(x0 + x1 + x2, x1 − x2 − x3)`.
pub fn at([x0, x1, x2, x3]: [&[f32]; 4], [y0, y1]: [&mut [f32]; 2]) {
    let n = y0.len();
    assert!(x0.len() >= n && x1.len() >= n && x2.len() >= n && x3.len() >= n && y1.len() >= n);
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if crate::avx512::available() {
        // SAFETY: as in `bt`.
        unsafe { x86::at([x0, x1, x2, x3], [y0, y1], n) };
        return;
    }
    for j in 0..n {
        y0[j] = x0[j] + x1[j] + x2[j];
        y1[j] = x1[j] - x2[j] - x3[j];
    }
}

/// `Aᵀ x` plus `bias` over four rows, the two results interleaved into `out`: `out[2j] = x0 + x1 + x2 + bias`,
/// `out[2j + 1] = x1 − x2 − x3 + bias` for `2j + 1 < out.len()`, and where `out` is odd in length, its last element
/// the first of the pair alone.
pub fn at_pairs([x0, x1, x2, x3]: [&[f32]; 4], bias: f32, out: &mut [f32]) {
    let n = out.len().div_ceil(2);
    assert!(x0.len() >= n && x1.len() >= n && x2.len() >= n && x3.len() >= n);
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if crate::avx512::available() {
        // SAFETY: as in `bt`; `out` holds exactly its own length.
        unsafe { x86::at_pairs([x0, x1, x2, x3], bias, out) };
        return;
    }
    let pairs = out.len() / 2;
    for (j, o) in out[..2 * pairs].chunks_exact_mut(2).enumerate() {
        o[0] = x0[j] + x1[j] + x2[j] + bias;
        o[1] = x1[j] - x2[j] - x3[j] + bias;
    }
    if out.len() % 2 == 1 {
        out[2 * pairs] = x0[pairs] + x1[pairs] + x2[pairs] + bias;
    }
}

/// `G f Gᵀ` for each of `c` 3×3 filters (`filters`: `c` runs of 9 taps, row by row) into 16 rows of `c`
/// (`u[ξ·c + i]` for point ξ = 4r + s of filter `i`), in one pass where the CPU has AVX-512: `false`, with nothing
/// written, elsewhere. The same operations in the same order as `winograd.rs`'s row-wise path (`G q` =
/// `(q0, (q0 + q1 + q2)/2, (q0 − q1 + q2)/2, q2)` down each column, then along each row).
pub fn weight_block(filters: &[f32], u: &mut [f32]) -> bool {
    let c = filters.len() / 9;
    assert!(u.len() >= 16 * c);
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if crate::avx512::available() {
        // SAFETY: AVX-512F is present; `filters` holds 9c elements and `u` at least 16c.
        unsafe { x86::weight_block(filters, u, c) };
        return true;
    }
    false
}

/// `Gᵀ q G` for each of `c` filters' 4×4 gradients (`du[ξ]`: point ξ = 4r + s, a row of `c`) into `dw` (`c` runs of
/// 9 taps, row by row), in one pass where the CPU has AVX-512: `false`, with nothing written, elsewhere. The same
/// operations in the same order as `winograd.rs`'s row-wise path (`Gᵀ q = (q0 + (q1 + q2)/2, (q1 − q2)/2,
/// (q1 + q2)/2 + q3)` along each row, then down each column).
pub fn weight_grad_block(du: [&[f32]; 16], dw: &mut [f32]) -> bool {
    let c = dw.len() / 9;
    assert!(du.iter().all(|r| r.len() >= c));
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if crate::avx512::available() {
        // SAFETY: AVX-512F is present; every row of `du` holds at least c elements, `dw` 9c.
        unsafe { x86::weight_grad_block(du, dw, c) };
        return true;
    }
    false
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
mod x86 {
    use crate::avx512::mask;
    use core::arch::x86_64::*;

    /// The vector loop shared by the maps: `f(j, mask)` for j = 0, 16, 32, … below `n`.
    #[inline(always)]
    fn each(n: usize, mut f: impl FnMut(usize, __mmask16)) {
        let mut j = 0;
        while j < n {
            f(j, mask(n - j));
            j += 16;
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn bt(x: [&[f32]; 4], y: [&mut [f32]; 4], n: usize) {
        let [y0, y1, y2, y3] = y;
        each(n, |j, m| unsafe {
            let ld = |r: &[f32]| _mm512_maskz_loadu_ps(m, r.as_ptr().add(j));
            let (a0, a1, a2, a3) = (ld(x[0]), ld(x[1]), ld(x[2]), ld(x[3]));
            _mm512_mask_storeu_ps(y0.as_mut_ptr().add(j), m, _mm512_sub_ps(a0, a2));
            _mm512_mask_storeu_ps(y1.as_mut_ptr().add(j), m, _mm512_add_ps(a1, a2));
            _mm512_mask_storeu_ps(y2.as_mut_ptr().add(j), m, _mm512_sub_ps(a2, a1));
            _mm512_mask_storeu_ps(y3.as_mut_ptr().add(j), m, _mm512_sub_ps(a1, a3));
        });
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn a(x: [&[f32]; 2], y: [&mut [f32]; 4], n: usize) {
        let [y0, y1, y2, y3] = y;
        each(n, |j, m| unsafe {
            let (a0, a1) =
                (_mm512_maskz_loadu_ps(m, x[0].as_ptr().add(j)), _mm512_maskz_loadu_ps(m, x[1].as_ptr().add(j)));
            _mm512_mask_storeu_ps(y0.as_mut_ptr().add(j), m, a0);
            _mm512_mask_storeu_ps(y1.as_mut_ptr().add(j), m, _mm512_add_ps(a0, a1));
            _mm512_mask_storeu_ps(y2.as_mut_ptr().add(j), m, _mm512_sub_ps(a0, a1));
            // −x1 by its sign bit, as the plain loop's negation (−0.0 for 0.0).
            let neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a1), _mm512_set1_epi32(i32::MIN)));
            _mm512_mask_storeu_ps(y3.as_mut_ptr().add(j), m, neg);
        });
    }

    /// The two sums of `Aᵀ x` for 16 lanes from `j` (zero past the mask).
    #[inline(always)]
    unsafe fn at_lanes(x: [&[f32]; 4], j: usize, m: __mmask16) -> (__m512, __m512) {
        unsafe {
            let ld = |r: &[f32]| _mm512_maskz_loadu_ps(m, r.as_ptr().add(j));
            let (a0, a1, a2, a3) = (ld(x[0]), ld(x[1]), ld(x[2]), ld(x[3]));
            (_mm512_add_ps(_mm512_add_ps(a0, a1), a2), _mm512_sub_ps(_mm512_sub_ps(a1, a2), a3))
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn at(x: [&[f32]; 4], y: [&mut [f32]; 2], n: usize) {
        let [y0, y1] = y;
        each(n, |j, m| unsafe {
            let (s0, s1) = at_lanes(x, j, m);
            _mm512_mask_storeu_ps(y0.as_mut_ptr().add(j), m, s0);
            _mm512_mask_storeu_ps(y1.as_mut_ptr().add(j), m, s1);
        });
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn at_pairs(x: [&[f32]; 4], bias: f32, out: &mut [f32]) {
        let len = out.len();
        let b = _mm512_set1_ps(bias);
        let lo: [u32; 16] = core::array::from_fn(|l| (l / 2 + 16 * (l % 2)) as u32);
        let hi: [u32; 16] = core::array::from_fn(|l| (8 + l / 2 + 16 * (l % 2)) as u32);
        let (lo, hi) = unsafe { (_mm512_loadu_si512(lo.as_ptr().cast()), _mm512_loadu_si512(hi.as_ptr().cast())) };
        // 16 pairs (32 outputs) per step: pair j of the step is lanes j of the two sums.
        each(len.div_ceil(2), |j, m| unsafe {
            let (s0, s1) = at_lanes(x, j, m);
            let (s0, s1) = (_mm512_add_ps(s0, b), _mm512_add_ps(s1, b));
            let rest = len - 2 * j;
            let p = out.as_mut_ptr().add(2 * j);
            _mm512_mask_storeu_ps(p, mask(rest), _mm512_permutex2var_ps(s0, lo, s1));
            if rest > 16 {
                _mm512_mask_storeu_ps(p.add(16), mask(rest - 16), _mm512_permutex2var_ps(s0, hi, s1));
            }
        });
    }
    /// Offsets of 16 filters' taps (9 apart).
    #[inline(always)]
    unsafe fn filter_lanes() -> __m512i {
        let at: [u32; 16] = core::array::from_fn(|l| 9 * l as u32);
        unsafe { _mm512_loadu_si512(at.as_ptr().cast()) }
    }

    /// `G q` of one column or row of three.
    #[inline(always)]
    unsafe fn g([q0, q1, q2]: [__m512; 3], half: __m512) -> [__m512; 4] {
        unsafe {
            [
                q0,
                _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(q0, q1), q2)),
                _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(q0, q1), q2)),
                q2,
            ]
        }
    }

    /// `Gᵀ q` of one row or column of four.
    #[inline(always)]
    unsafe fn gt([q0, q1, q2, q3]: [__m512; 4], half: __m512) -> [__m512; 3] {
        unsafe {
            [
                _mm512_add_ps(q0, _mm512_mul_ps(half, _mm512_add_ps(q1, q2))),
                _mm512_mul_ps(half, _mm512_sub_ps(q1, q2)),
                _mm512_add_ps(_mm512_mul_ps(half, _mm512_add_ps(q1, q2)), q3),
            ]
        }
    }

    /// 16 filters per step: their taps gathered into 9 vectors, transformed in registers, 16 rows stored.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weight_block(filters: &[f32], u: &mut [f32], c: usize) {
        let (at, half) = (unsafe { filter_lanes() }, _mm512_set1_ps(0.5));
        each(c, |i, m| unsafe {
            let base = filters.as_ptr().add(9 * i);
            let tap = |t: usize| _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, at, base.add(t).cast());
            // G f down each column b: gf[b][r].
            let gf: [[__m512; 4]; 3] = core::array::from_fn(|b| g([tap(b), tap(3 + b), tap(6 + b)], half));
            let rows: [[__m512; 3]; 4] = core::array::from_fn(|r| [gf[0][r], gf[1][r], gf[2][r]]);
            for (r, row) in rows.into_iter().enumerate() {
                for (s, v) in g(row, half).into_iter().enumerate() {
                    _mm512_mask_storeu_ps(u.as_mut_ptr().add((4 * r + s) * c + i), m, v);
                }
            }
        });
    }

    /// 16 filters per step: 16 rows loaded, transformed in registers, 9 taps scattered into the filters.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weight_grad_block(du: [&[f32]; 16], dw: &mut [f32], c: usize) {
        let (at, half) = (unsafe { filter_lanes() }, _mm512_set1_ps(0.5));
        each(c, |i, m| unsafe {
            let q = |xi: usize| _mm512_maskz_loadu_ps(m, du[xi].as_ptr().add(i));
            // Gᵀ q along each row r: rows[r][b].
            let rows: [[__m512; 3]; 4] =
                core::array::from_fn(|r| gt([q(4 * r), q(4 * r + 1), q(4 * r + 2), q(4 * r + 3)], half));
            let base = dw.as_mut_ptr().add(9 * i);
            let columns: [[__m512; 4]; 3] = core::array::from_fn(|b| [rows[0][b], rows[1][b], rows[2][b], rows[3][b]]);
            for (b, column) in columns.into_iter().enumerate() {
                for (a, v) in gt(column, half).into_iter().enumerate() {
                    _mm512_mask_i32scatter_ps::<4>(base.add(3 * a + b).cast(), m, at, v);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, seed: u32) -> [Vec<f32>; 4] {
        core::array::from_fn(|r| {
            (0..n).map(|j| ((j as u32 * 7919 + seed * 31 + r as u32 * 13) % 97) as f32 / 7.0 - 6.0).collect()
        })
    }

    /// Bit patterns, so that −0.0 and 0.0 differ.
    fn bits<const N: usize>(v: [f32; N]) -> [u32; N] {
        v.map(f32::to_bits)
    }

    #[test]
    fn every_map_matches_its_definition_at_every_length() {
        for n in 0..50 {
            let x = rows(n, n as u32);
            let [x0, x1, x2, x3] = [&x[0][..], &x[1][..], &x[2][..], &x[3][..]];
            let mut y: [Vec<f32>; 4] = core::array::from_fn(|_| vec![f32::NAN; n]);
            {
                let [y0, y1, y2, y3] = &mut y;
                bt([x0, x1, x2, x3], [y0, y1, y2, y3]);
            }
            for j in 0..n {
                assert_eq!(
                    bits([y[0][j], y[1][j], y[2][j], y[3][j]]),
                    bits([x0[j] - x2[j], x1[j] + x2[j], x2[j] - x1[j], x1[j] - x3[j]])
                );
            }
            {
                let [y0, y1, y2, y3] = &mut y;
                a([x0, x1], [y0, y1, y2, y3]);
            }
            for j in 0..n {
                assert_eq!(
                    bits([y[0][j], y[1][j], y[2][j], y[3][j]]),
                    bits([x0[j], x0[j] + x1[j], x0[j] - x1[j], -x1[j]])
                );
            }
            {
                let [y0, y1, _, _] = &mut y;
                at([x0, x1, x2, x3], [y0, y1]);
            }
            for j in 0..n {
                assert_eq!(bits([y[0][j], y[1][j]]), bits([x0[j] + x1[j] + x2[j], x1[j] - x2[j] - x3[j]]));
            }
            // Interleaved, for even and odd output lengths, nothing written past the end.
            for len in [2 * n, (2 * n).saturating_sub(1)] {
                let mut out = vec![f32::NAN; len + 3];
                at_pairs([x0, x1, x2, x3], 0.25, &mut out[..len]);
                for (i, &o) in out[..len].iter().enumerate() {
                    let j = i / 2;
                    let want = if i % 2 == 0 { x0[j] + x1[j] + x2[j] + 0.25 } else { x1[j] - x2[j] - x3[j] + 0.25 };
                    assert_eq!(o.to_bits(), want.to_bits(), "n {n} len {len} at {i}");
                }
                assert!(out[len..].iter().all(|v| v.is_nan()), "n {n} len {len}: written past the end");
            }
        }
    }
}
