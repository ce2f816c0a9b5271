//! im2col gathered straight into AMX's bf16 tiles: an implicit GEMM for the stride-1 convolutions that take
//! [`super::im2col`] when the process multiplies on AMX tiles ([`gemm_isa::GemmIsa::AmxBf16`]).
//!
//! The explicit path writes the f32 matrix `cols` (R × P: one row per tap `(c_in, ki, kj)`, one column per output
//! position), and the AMX GEMM reads it back to round it into its bf16 tiles. Here the tiles are filled from the
//! input itself: one tap at 16 consecutive output positions reads one run of an input row per output row those
//! positions touch, with masked loads that leave the padding at zero. The forward pass multiplies
//! `W (C_out × R) · cols` (`cols` the right-hand side, taps along k), the weight gradient `dY (C_out × P) · colsᵀ`
//! (positions along k). The f32 matrix is never written: that saves a write and a read of `cols` per product.
//! Built on x86-64 Linux only, where [`crate::amx`] is.

use burn_backend::ops::ConvOptions;

use crate::gemm_isa;

/// Whether [`Cols`] can read this convolution's im2col matrix and the products run on AMX tiles: f32 on
/// [`gemm_isa::GemmIsa::AmxBf16`], ungrouped, stride 1 and dilation 1 (each tap's positions along an output row are
/// consecutive input values).
pub(crate) fn applies(options: &ConvOptions<2>, f32_elements: bool) -> bool {
    f32_elements
        && options.groups <= 1
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && gemm_isa::on_amx_tiles()
}

/// The kernel positions of a stride-1 convolution (each a shift from the output position to the input) and the
/// sizes that place an output position in the input. Tap `r` of the im2col matrix is input channel
/// `r / positions`, kernel position `r % positions`.
pub(crate) struct Taps {
    shifts: Vec<(isize, isize)>,
    c_in: usize,
    plane: isize,
    image: isize,
    in_h: isize,
    in_w: isize,
    out_w: usize,
    p: usize,
}

impl Taps {
    /// `[c_in, in_h, in_w]` input, `[kh, kw]` kernel, `[out_h, out_w]` output, `padding` (rows, columns).
    pub(crate) fn new(
        [c_in, in_h, in_w]: [usize; 3],
        [kh, kw]: [usize; 2],
        [out_h, out_w]: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        let shift = |k: usize, pad: usize| k as isize - pad as isize;
        let shifts = (0..kh * kw).map(|i| (shift(i / kw, padding[0]), shift(i % kw, padding[1]))).collect();
        let plane = (in_h * in_w) as isize;
        Self {
            shifts,
            c_in,
            plane,
            image: c_in as isize * plane,
            in_h: in_h as isize,
            in_w: in_w as isize,
            out_w,
            p: out_h * out_w,
        }
    }

    /// R: the im2col matrix's rows.
    pub(crate) fn len(&self) -> usize {
        self.c_in * self.shifts.len()
    }
}

/// The im2col matrix of `count` consecutive output positions from `start` (counted from the first position of
/// the image at `x`, running on into the next images), read in place.
pub(crate) struct Cols<'a> {
    pub(crate) taps: &'a Taps,
    pub(crate) x: *const f32,
    pub(crate) start: usize,
    pub(crate) count: usize,
}

// SAFETY: `Cols` only reads through `x`, which the caller keeps alive and unchanged while the product runs.
unsafe impl Sync for Cols<'_> {}

/// The masked loads that gather 16 positions of one tap: for each kernel position, one `(offset, mask)` per run of
/// the positions along an output row — the offset from the tap's input plane to where lane 0 would read, and the
/// lanes that read inside the input (none where the run lies wholly in the padding).
struct Gather {
    loads: Vec<(isize, u16)>,
    runs: usize,
}

impl Cols<'_> {
    /// The loads of positions `q0 .. q0 + 16` (fewer at the end, none past it).
    fn gather(&self, q0: usize) -> Gather {
        let t = self.taps;
        let end = (q0 + 16).min(self.count);
        // The runs: (first lane, length, image offset, output row, first output column).
        let mut runs = Vec::with_capacity(4);
        let mut q = q0;
        while q < end {
            let pos = self.start + q;
            let (img, rest) = (pos / t.p, pos % t.p);
            let (oh, ow) = (rest / t.out_w, rest % t.out_w);
            let len = (end - q).min(t.out_w - ow);
            runs.push(((q - q0) as isize, len as isize, img as isize * t.image, oh as isize, ow as isize));
            q += len;
        }
        let mut loads = Vec::with_capacity(t.shifts.len() * runs.len());
        for &(dh, dw) in &t.shifts {
            for &(lane, len, image, oh, ow) in &runs {
                let ih = oh + dh;
                // Output columns ow .. ow + len read input columns ow + dw ..; keep those inside the input.
                let (lo, hi) = (ow.max(-dw), (ow + len).min(t.in_w - dw));
                if ih < 0 || ih >= t.in_h || lo >= hi {
                    loads.push((0, 0));
                    continue;
                }
                let first = lane + lo - ow;
                let mask = (((1u32 << (hi - lo)) - 1) << first) as u16;
                // Lane `first` reads input column lo + dw of row ih.
                loads.push((image + ih * t.in_w + lo + dw - first, mask));
            }
        }
        Gather { loads, runs: runs.len() }
    }
}

mod tiles {
    use core::arch::x86_64::*;

    use super::{Cols, Gather};
    use crate::amx::{simd, TILE_K, TILE_LEN, TILE_N};

    impl Cols<'_> {
        /// Input channel `ci` at kernel position `kp` (a tap, `ci < c_in`, or zero lanes past the last channel).
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn lanes_at(&self, ci: usize, kp: usize, g: &Gather) -> __m512 {
            let t = self.taps;
            let mut v = _mm512_setzero_ps();
            if ci >= t.c_in {
                return v;
            }
            let plane = ci as isize * t.plane;
            if g.runs == 1 {
                // The usual case (16 positions along one output row): one load, nothing to merge.
                let (at, mask) = g.loads[kp];
                // SAFETY: as below.
                return unsafe { _mm512_maskz_loadu_ps(mask, self.x.wrapping_offset(plane + at)) };
            }
            // Several runs (an output row shorter than 16, or the 16 positions crossing a row's end): their lanes
            // are disjoint, so the zero-masked loads are ORed together, with no branch on which lie in the padding.
            for &(at, mask) in &g.loads[kp * g.runs..(kp + 1) * g.runs] {
                // SAFETY: the lanes of `mask` read inside this tap's input plane (`gather`); masked-off lanes are not
                // read (a run wholly in the padding has no lanes).
                let run = unsafe { _mm512_maskz_loadu_ps(mask, self.x.wrapping_offset(plane + at)) };
                v = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), _mm512_castps_si512(run)));
            }
            v
        }

        /// Strip `t` of the forward pass's right-hand side (`cols`, R × count): positions `16·t ..` as `kt`
        /// tiles, each row two taps interleaved.
        ///
        /// # Safety
        /// AVX-512F/BW/BF16 available; `out` is `kt` tiles long.
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        pub(super) unsafe fn forward_strip(&self, t: usize, kt: usize, out: &mut [u16]) {
            let g = self.gather(t * TILE_N);
            let positions = self.taps.shifts.len();
            // The taps in order (input channel, kernel position), two to a tile row, without a division each.
            let (mut ci, mut kp) = (0, 0);
            for row in out[..kt * TILE_LEN].chunks_exact_mut(TILE_K) {
                let mut pair = [_mm512_setzero_ps(); 2];
                for v in &mut pair {
                    // SAFETY: this function's target features.
                    *v = unsafe { self.lanes_at(ci, kp, &g) };
                    kp += 1;
                    if kp == positions {
                        (ci, kp) = (ci + 1, 0);
                    }
                }
                let v = simd::interleave(simd::to_bf16(pair[0], pair[1]));
                // SAFETY: `row` holds 32 bf16 values, 64 bytes.
                unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), v) };
            }
        }

        /// Tile row `kb` of the weight gradient's right-hand side (`colsᵀ`, count × R): positions
        /// `32·kb .. 32·kb + 32` for every strip of 16 taps, each tile row two positions interleaved.
        ///
        /// # Safety
        /// AVX-512F/BW/BF16 available; `out` addresses `nt` strips of `kt` tiles, tile `kb` of each written by this
        /// call only.
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        pub(super) unsafe fn weight_grad_tile_row(&self, kb: usize, kt: usize, nt: usize, out: *mut u16) {
            let (first, second) = (self.gather(kb * TILE_K), self.gather(kb * TILE_K + TILE_N));
            let positions = self.taps.shifts.len();
            // The taps in order (input channel, kernel position), 16 to a strip, without a division each.
            let (mut ci, mut kp) = (0, 0);
            for t in 0..nt {
                let mut v = [_mm512_setzero_si512(); 16];
                for vc in &mut v {
                    // Lane q: the pair of positions (32·kb + 2q, 32·kb + 2q + 1) of this tap.
                    // SAFETY: this function's target features.
                    *vc = unsafe { simd::to_bf16(self.lanes_at(ci, kp, &first), self.lanes_at(ci, kp, &second)) };
                    kp += 1;
                    if kp == positions {
                        (ci, kp) = (ci + 1, 0);
                    }
                }
                simd::transpose(&mut v);
                for (p, vp) in v.iter().enumerate() {
                    // SAFETY: row p of tile kb of strip t, inside `out` and this call's own.
                    unsafe { _mm512_storeu_si512(out.add((t * kt + kb) * TILE_LEN + p * TILE_K).cast(), *vp) };
                }
            }
        }
    }
}

pub(crate) use products::{forward, weight_grad};

mod products {
    use super::Cols;
    use crate::amx::{gemm_packed_by, PackedLhs, RhsTiles, TILE_K, TILE_N};

    /// `dst (C_out × count, row stride dst_rs) = W · cols`, `w` the weight (C_out × R) packed once.
    ///
    /// # Safety
    /// [`super::applies`] said yes; `cols.x` addresses the images its positions cover, `dst` C_out rows of
    /// `cols.count` values, `dst_rs` apart, that nothing else touches meanwhile.
    pub(crate) unsafe fn forward(w: &PackedLhs, cols: &Cols<'_>, dst: *mut f32, dst_rs: usize, threads: usize) {
        let kt = cols.taps.len().div_ceil(TILE_K);
        // SAFETY: AMX was selected, so AVX-512F/BW/BF16 are present; each strip is `kt` tiles.
        let strip = |t: usize, s: &mut [u16]| unsafe { cols.forward_strip(t, kt, s) };
        // SAFETY: the caller's contract; the packer writes every value of every strip.
        unsafe { gemm_packed_by(w, cols.count, dst, (1, dst_rs), false, RhsTiles::Strips(&strip), threads) }
    }

    /// `grad (C_out × R) [+]= dY (C_out × count, row stride dy_rs) · colsᵀ`.
    ///
    /// # Safety
    /// As [`forward`]; `dy` addresses C_out rows of `cols.count` values, `dy_rs` apart, `grad` C_out × R values.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn weight_grad(
        dy: *const f32,
        dy_rs: usize,
        c_out: usize,
        cols: &Cols<'_>,
        grad: *mut f32,
        accumulate: bool,
        threads: usize,
    ) {
        let (k, r) = (cols.count, cols.taps.len());
        let kt = k.div_ceil(TILE_K);
        let nt = r.div_ceil(TILE_N).next_multiple_of(2);
        // SAFETY: the caller's contract.
        let a = unsafe { PackedLhs::new(c_out, k, dy, (1, dy_rs), threads > 1) };
        // SAFETY: AMX was selected, so AVX-512F/BW/BF16 are present; tile row kb of every strip is this call's.
        let row = |kb: usize, out: *mut u16| unsafe { cols.weight_grad_tile_row(kb, kt, nt, out) };
        // SAFETY: the caller's contract; the packer writes every value of every strip.
        unsafe { gemm_packed_by(&a, r, grad, (1, r), accumulate, RhsTiles::TileRows(&row), threads) }
    }
}
