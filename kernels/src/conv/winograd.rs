//! 3×3, stride-1 convolutions (f32, ungrouped) as Winograd F(2×2, 3×3), forward pass, input
//! gradient and weight gradient.
//!
//! Each 2×2 block of outputs ("tile") is computed from the 4×4 block of (padded) input under it as
//! `Y = Aᵀ [(G f Gᵀ) ⊙ (Bᵀ d B)] A`, with
//!
//! ```text
//!      | 1  0 -1  0 |        | 1    0    0  |
//! Bᵀ = | 0  1  1  0 |    G = | 1/2  1/2  1/2|    Aᵀ = | 1  1  1  0 |
//!      | 0 -1  1  0 |        | 1/2 -1/2  1/2|         | 0  1 -1 -1 |
//!      | 0  1  0 -1 |        | 0    0    1  |
//! ```
//!
//! The sum over input channels happens between the transforms, as 16 GEMMs (one per point ξ of the 4×4
//! transform): `M_ξ (C_out × T) = U_ξ (C_out × C_in) · V_ξ (C_in × T)` over `T` tiles. That is 16 multiplies per
//! tile per channel pair where im2col's GEMM does 36 (4 outputs × 9 taps): 2.25× fewer, and no 9×-sized im2col
//! matrix. Both gradients are the same three linear maps run backwards:
//!
//! - input gradient: a stride-1 3×3 convolution of the output gradient with the filters rotated by 180° and the
//!   channel axes swapped, padded by `2 − padding` (the same code as the forward pass);
//! - weight gradient: `dU_ξ (C_out × C_in) = Σ_tiles dM_ξ · V_ξᵀ` with `dM = A dY Aᵀ` per output-gradient tile,
//!   then `dW = Gᵀ dU G` per filter (the adjoint of the forward pass's weight transform).
//!
//! Two ways to share the work between threads, chosen per layer:
//!
//! - by band, where the transformed data outweighs the transformed weight (the early, wide layers): bands of tile
//!   rows (a tile row is one image's row of tiles; bands may span images) sized so a band's transformed input and
//!   products stay within a few MiB, each band its own transforms and 16 single-threaded GEMMs, bands side by side;
//!   the weight gradient sums one partial product per thread (a fixed, contiguous run of bands each), in order;
//! - by point, where the weight is the larger (the deep layers, few positions): the whole batch is transformed
//!   (in parallel by bands), then the 16 GEMMs run side by side over all tiles, each reading its point's weight
//!   once, then the output is transformed back (by bands).
//!
//! Every output element is written by one task and sums run in a fixed order, so results do not depend on
//! scheduling. Used where the batch has enough output tiles ([`MIN_TILES`]) to pay for transforming the weight:
//! a single image's small deep layers keep im2col.rs's forward pass. On AMX tiles only the layers with a large
//! im2col matrix take it ([`AMX_IM2COL_COLS`]): there the products are cheap and im2col wins elsewhere. The
//! transformed weights, whole-batch buffers and gradient accumulators live in per-thread buffers kept between
//! calls (im2col.rs's `scratch`): allocating them afresh cost page faults on tens of MiB per call on the deep
//! layers.
//!
//! `PNEUMOSCOPE_WINOGRAD=0` in the environment turns this path off (for measuring it against im2col).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::ConvOptions;
use burn_backend::DType;
use burn_std::Shape;
use core::ops::Range;

use super::im2col::{dims4, gemm_into, scratch, threads};
use super::lanes;
use crate::gemm_isa::{gemm_f32_packed, pack_lhs_f32, PackedLhs};
use burn_flex::{FlexTensor, Layout};

/// Points of the 4×4 transform.
const XI: usize = 16;

/// Fewest input and output channels taken. The models' 3-channel first layers take small.rs;
/// GEMMs thinner than 16 were not measured (the CNNs’ 16 → 32 layer gains 6–16 %).
const MIN_CHANNELS: usize = 16;

/// Fewest output tiles (2×2 blocks of outputs, over the whole batch) for which the transforms pay for themselves:
/// transforming the weight costs about as much as the GEMMs save on a few dozen tiles (one 128 px image's 8×8
/// ResNet-34 layer, 16 tiles: 0.9–1.1 ms against im2col's 0.6–0.7; its 16×16 layer, 64 tiles: 0.4 against 0.5).
const MIN_TILES: usize = 64;

/// On AMX tiles (`PNEUMOSCOPE_GEMM=amx-bf16`) im2col's products run so fast that Winograd's transforms, bound by
/// memory, cost more than the 2.25× fewer multiplies save, except where one image's im2col matrix
/// (`9·C_in × OH·OW`) is large: im2col takes the layers up to this many elements of it (6 MiB of f32). Measured
/// forward + backward, batch 16, on a 2-core Xeon with AMX (2026-12-07, `conv_layers`, Winograd against im2col):
/// im2col faster at 0.2–1.2 M (the regularized CNN's 32 → 32 layer at 64 px, 29.7–34.0 against 24.6–25.7 ms; every
/// 3×3 layer of both CNNs and ResNet-34 at 128 px), level at 1.8 M (16 → 32 at 112 px), slower at 1.8 M and above
/// (64 → 64 at 56 px, 44–56 against 55–60 ms; 32 → 32 at 112 px, 62–76 against 104–128 ms).
const AMX_IM2COL_COLS: usize = 3 << 19;

/// Transformed input plus products per band, in elements (4 MiB of f32), forward pass and input gradient.
const BAND_ELEMS: usize = 1 << 20;

/// The same for the weight gradient, whose per-band GEMMs add into a `C_out × C_in` matrix per point: larger bands
/// read and write that matrix fewer times.
const GRAD_BAND_ELEMS: usize = 2 << 20;

#[cfg(feature = "std")]
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("PNEUMOSCOPE_WINOGRAD").map_or(true, |v| v.trim() != "0"))
}

#[cfg(not(feature = "std"))]
fn enabled() -> bool {
    true
}

/// Whether this path takes a convolution of input `[N, C_in, H, W]` with weight `[C_out, C_in / groups, KH, KW]`:
/// f32 is the caller's check; here 3×3, stride 1, no dilation, no groups, padding ≤ 2, at least
/// [`MIN_CHANNELS`] channels each way and [`MIN_TILES`] output tiles; on AMX tiles, only layers whose im2col
/// matrix is larger than [`AMX_IM2COL_COLS`].
pub fn applies(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> bool {
    let [n, c_in, h, w] = x;
    let [c_out, c_in_w, kh, kw] = weight;
    let [ph, pw] = options.padding;
    // The output's size (padded input less 2); zero where the input is too small, which the checks below refuse.
    let (oh, ow) = ((h + 2 * ph).saturating_sub(2), (w + 2 * pw).saturating_sub(2));
    enabled()
        && options.groups == 1
        && c_in_w == c_in
        && [kh, kw] == [3, 3]
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && ph <= 2
        && pw <= 2
        && h + 2 * ph >= 3
        && w + 2 * pw >= 3
        && c_in >= MIN_CHANNELS
        && c_out >= MIN_CHANNELS
        && n * oh.div_ceil(2) * ow.div_ceil(2) >= MIN_TILES
        && !(crate::gemm_isa::on_amx_tiles() && 9 * c_in * oh * ow <= AMX_IM2COL_COLS)
}

/// One convolution's shape as the transforms see it: input `[C, H, W]` padded by `ph`, `pw`; output `[K, OH, OW]`
/// in `TH × TW` tiles of 2×2.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    k: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
    th: usize,
    tw: usize,
}

impl Geometry {
    fn new(c: usize, k: usize, [h, w]: [usize; 2], [ph, pw]: [usize; 2]) -> Self {
        let (oh, ow) = (h + 2 * ph - 2, w + 2 * pw - 2);
        Self { c, k, h, w, ph, pw, oh, ow, th: oh.div_ceil(2), tw: ow.div_ceil(2) }
    }

    /// Length of a padded input row covering every tile of a tile row (`2·TW + 2 ≥ W + 2·pw`).
    fn row_len(&self) -> usize {
        2 * self.tw + 2
    }

    /// The tile rows of `n` images cut into bands of at most `budget` transformed elements, and at least one
    /// band per thread.
    fn bands(&self, n: usize, budget: usize) -> Vec<Range<usize>> {
        let per_row = XI * (self.c + self.k) * self.tw;
        let total = n * self.th;
        let rows = (budget / per_row.max(1)).clamp(1, total.div_ceil(threads()).max(1));
        (0..total).step_by(rows).map(|r0| r0..(r0 + rows).min(total)).collect()
    }

    /// Image and tile row of global tile row `gr`.
    fn locate(&self, gr: usize) -> (usize, usize) {
        (gr / self.th, gr % self.th)
    }
}

/// Runs `f` on each item, side by side where rayon is on.
fn for_each_par<I: Send, F: Fn(I) + Send + Sync>(items: Vec<I>, f: F) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        items.into_par_iter().for_each(f);
    }
    #[cfg(not(feature = "rayon"))]
    items.into_iter().for_each(f);
}

/// Runs `f(i, chunk)` on each `len`-sized chunk of `buf`, side by side where rayon is on.
fn chunks_par<F: Fn(usize, &mut [f32]) + Send + Sync>(buf: &mut [f32], len: usize, f: F) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        buf.par_chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    }
    #[cfg(not(feature = "rayon"))]
    buf.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
}

/// `U` for the GEMMs, laid out `[K][ξ][C]` (so `U_ξ` is `K × C` with row stride `16·C`): `(G f Gᵀ)` for each
/// 3×3 filter `f` of the weight `[K, C, 3, 3]`. Each `K` block is built from its filters' taps gathered as 9 rows
/// over `C`, so the transform runs element-wise over contiguous rows.
///
/// The input gradient needs the transform of the filters rotated by 180° with the channel axes swapped; since
/// `G J = P G` (`J` reverses the three taps, `P` swaps the first and last of the four points), that is
/// `U_{p(ξ)}ᵀ`: the same `U`, read transposed at the permuted point (see [`WeightView`]).
fn weight_transform(w: &[f32], c: usize, u: &mut [f32]) {
    chunks_par(u, XI * c, |o, block| {
        let filters = &w[o * c * 9..(o + 1) * c * 9];
        if !lanes::weight_block(filters, block) {
            weight_block_by_rows(filters, block);
        }
    });
}

/// One output channel's block of [`weight_transform`] (its `C` filters, `[ξ][C]`) row by row over `C`: where the
/// CPU has no AVX-512 ([`lanes::weight_block`] computes the same in one pass where it has).
fn weight_block_by_rows(filters: &[f32], block: &mut [f32]) {
    let c = filters.len() / 9;
    scratch::with::<f32, _>([21 * c, 0], |taps, _| {
        // taps[a·3 + b][i]: tap (a, b) of the filter from input channel i to this output channel.
        let (taps, gf) = taps.split_at_mut(9 * c);
        for (i, f) in filters.chunks_exact(9).enumerate() {
            for (tap, &v) in f.iter().enumerate() {
                taps[tap * c + i] = v;
            }
        }
        // G f (4 × 3 rows over C, in `gf` as [r·3 + b]), one kernel column b at a time: rows f0,
        // (f0 + f1 + f2)/2, (f0 − f1 + f2)/2, f2 ...
        let (g0, rest) = gf.split_at_mut(3 * c);
        let (g1, rest) = rest.split_at_mut(3 * c);
        let (g2, g3) = rest.split_at_mut(3 * c);
        for b in 0..3 {
            let (f0, f1, f2) = (row_of(taps, b, c), row_of(taps, 3 + b, c), row_of(taps, 6 + b, c));
            let cols = b * c..(b + 1) * c;
            let (d0, d1) = (&mut g0[cols.clone()], &mut g1[cols.clone()]);
            let (d2, d3) = (&mut g2[cols.clone()], &mut g3[cols]);
            four_rows([f0, f1, f2], [d0, d1, d2, d3]);
        }
        // ... then each row of G f times Gᵀ, the same combination along the other axis.
        for (r, gr) in [&*g0, &*g1, &*g2, &*g3].into_iter().enumerate() {
            let (a0, a1, a2) = (row_of(gr, 0, c), row_of(gr, 1, c), row_of(gr, 2, c));
            let (d0, rest) = block[4 * r * c..(4 * r + 4) * c].split_at_mut(c);
            let (d1, rest) = rest.split_at_mut(c);
            let (d2, d3) = rest.split_at_mut(c);
            four_rows([a0, a1, a2], [d0, d1, d2, d3]);
        }
    });
}

/// `G q` element-wise over rows: `(q0, (q0 + q1 + q2)/2, (q0 − q1 + q2)/2, q2)`.
fn four_rows([q0, q1, q2]: [&[f32]; 3], [d0, d1, d2, d3]: [&mut [f32]; 4]) {
    let n = q0.len();
    let (q1, q2, d0, d1, d2, d3) = (&q1[..n], &q2[..n], &mut d0[..n], &mut d1[..n], &mut d2[..n], &mut d3[..n]);
    for i in 0..n {
        d0[i] = q0[i];
        d1[i] = 0.5 * (q0[i] + q1[i] + q2[i]);
        d2[i] = 0.5 * (q0[i] - q1[i] + q2[i]);
        d3[i] = q2[i];
    }
}

/// Row `r` of `n` elements.
fn row_of(buf: &[f32], r: usize, n: usize) -> &[f32] {
    &buf[r * n..(r + 1) * n]
}

/// Transformed data: 16 planes `plane` elements apart, one row of `stride` tiles per channel.
#[derive(Clone, Copy)]
struct Planes {
    ptr: *mut f32,
    plane: usize,
    stride: usize,
}

// SAFETY: tasks write disjoint tiles through `seg` (see its contract); the pointer outlives them.
unsafe impl Send for Planes {}
unsafe impl Sync for Planes {}

impl Planes {
    fn of(buf: &mut [f32], channels: usize, stride: usize) -> Self {
        assert!(buf.len() >= XI * channels * stride, "transform buffer too small");
        Self { ptr: buf.as_mut_ptr(), plane: channels * stride, stride }
    }

    /// Tiles `t .. t + len` of channel `c` in plane `xi`.
    ///
    /// # Safety
    /// In bounds (`c` < channels, `t + len ≤ stride`), and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn seg(&self, xi: usize, c: usize, t: usize, len: usize) -> &mut [f32] {
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(xi * self.plane + c * self.stride + t), len) }
    }
}

/// One input row padded by `pw` (≤ 2) zeros on each side, as its even padded columns in `even` and its odd ones in
/// `odd` (each at least half the padded row long, rounded up; zero past the row). Input column `iw` is padded column
/// `iw + pw`: with `pw` even the row's pairs (`2k`, `2k + 1`) land at `even[pw/2 + k]`, `odd[pw/2 + k]`; with `pw`
/// odd at `odd[k]`, `even[k + 1]`.
/// One pass over the pairs, which the compiler turns into vector shuffles.
fn split_row(src: &[f32], pw: usize, (even, odd): (&mut [f32], &mut [f32])) {
    let pairs = src.len() / 2;
    let (lo, hi, at_lo, at_hi) = if pw.is_multiple_of(2) { (even, odd, pw / 2, pw / 2) } else { (odd, even, 0, 1) };
    // `lo` takes the pairs' first values from `at_lo`, `hi` their second values from `at_hi`.
    lo[..at_lo].fill(0.0);
    hi[..at_hi].fill(0.0);
    {
        let (l, h) = (&mut lo[at_lo..at_lo + pairs], &mut hi[at_hi..at_hi + pairs]);
        for ((p, l), h) in src.chunks_exact(2).zip(l.iter_mut()).zip(h.iter_mut()) {
            *l = p[0];
            *h = p[1];
        }
    }
    let (mut end_lo, end_hi) = (at_lo + pairs, at_hi + pairs);
    if src.len() % 2 == 1 {
        lo[end_lo] = src[src.len() - 1];
        end_lo += 1;
    }
    lo[end_lo..].fill(0.0);
    hi[end_hi..].fill(0.0);
}

/// `V[ξ][c][t0 + t] = (Bᵀ d B)[ξ]` for every tile `t` of the tile rows `rows` (`t` = row in band · TW + column)
/// and every channel. `buf` holds 8 padded rows ([`Geometry::row_len`]).
///
/// Each padded input row is kept as its even columns then its odd columns, so that both stages of the transform
/// are element-wise over contiguous runs (tile `t` reads padded columns `2t .. 2t + 4`: even `t`, `t + 1`, odd
/// `t`, `t + 1`). Tile row `t` reads padded rows `2t .. 2t + 4`, so the next tile row of the same image takes
/// the last two of them over as its first two and splits only two new rows.
///
/// # Safety
/// `v` must have room for the band's tiles, and no other task may write them.
unsafe fn input_transform(x: &[f32], g: &Geometry, rows: Range<usize>, t0: usize, v: Planes, buf: &mut [f32]) {
    let (wl, half, tw) = (g.row_len(), g.row_len() / 2, g.tw);
    let plane = g.h * g.w;
    let (d, e) = buf[..8 * wl].split_at_mut(4 * wl);
    for c in 0..g.c {
        // The slots of `d` holding padded rows 2t .. 2t + 4 of the previous tile row, if it was this one's
        // predecessor in the same image.
        let mut order = [0usize, 1, 2, 3];
        let mut previous: Option<(usize, usize)> = None;
        for (i, gr) in rows.clone().enumerate() {
            let (b, t) = g.locate(gr);
            let src = &x[(b * g.c + c) * plane..(b * g.c + c + 1) * plane];
            let first_new = if previous == Some((b, t.wrapping_sub(1))) {
                order = [order[2], order[3], order[0], order[1]];
                2
            } else {
                0
            };
            previous = Some((b, t));
            // The padded input rows under tile row t not split yet, into even and odd columns.
            for (r, &slot) in order.iter().enumerate().skip(first_new) {
                let ih = (2 * t + r) as isize - g.ph as isize;
                let row = &mut d[slot * wl..(slot + 1) * wl];
                if ih < 0 || ih as usize >= g.h {
                    row.fill(0.0);
                    continue;
                }
                split_row(&src[ih as usize * g.w..(ih as usize + 1) * g.w], g.pw, row.split_at_mut(half));
            }
            let d = &*d;
            let at_slot = |r: usize| &d[order[r] * wl..(order[r] + 1) * wl];
            let (d0, d1, d2, d3) = (at_slot(0), at_slot(1), at_slot(2), at_slot(3));
            // Bᵀ d along the rows, whole rows at once ...
            let (e0, rest) = e.split_at_mut(wl);
            let (e1, rest) = rest.split_at_mut(wl);
            let (e2, e3) = rest.split_at_mut(wl);
            lanes::bt([d0, d1, d2, d3], [e0, e1, e2, e3]);
            // ... then · B along the columns: q0 − q2, q1 + q2, q2 − q1, q1 − q3 with q0 = even[t], q1 = odd[t],
            // q2 = even[t + 1], q3 = odd[t + 1].
            let at = t0 + i * tw;
            for (r, er) in e.chunks_exact(wl).enumerate() {
                let (ev, od) = er.split_at(half);
                let (q0, q1, q2, q3) = (&ev[..tw], &od[..tw], &ev[1..=tw], &od[1..=tw]);
                // SAFETY: this band's tiles of channel c in four distinct planes (the caller's contract).
                let (v0, v1, v2, v3) = unsafe {
                    (
                        v.seg(4 * r, c, at, tw),
                        v.seg(4 * r + 1, c, at, tw),
                        v.seg(4 * r + 2, c, at, tw),
                        v.seg(4 * r + 3, c, at, tw),
                    )
                };
                lanes::bt([q0, q1, q2, q3], [v0, v1, v2, v3]);
            }
        }
    }
}

/// `dM[ξ][k][t0 + t] = (A y Aᵀ)[ξ]` for each 2×2 output-gradient tile `y` of the band (zero past an odd last row
/// or column). `buf` holds 12 rows of `TW`.
///
/// # Safety
/// As [`input_transform`].
unsafe fn grad_output_transform(dy: &[f32], g: &Geometry, rows: Range<usize>, t0: usize, dm: Planes, buf: &mut [f32]) {
    let tw = g.tw;
    let oplane = g.oh * g.ow;
    let (y, u) = buf[..12 * tw].split_at_mut(4 * tw);
    for k in 0..g.k {
        for (i, gr) in rows.clone().enumerate() {
            let (b, t) = g.locate(gr);
            let plane = &dy[(b * g.k + k) * oplane..(b * g.k + k + 1) * oplane];
            // The tile row's two output rows as even and odd columns: y = [y0 even, y0 odd, y1 even, y1 odd].
            for (a, halves) in y.chunks_exact_mut(2 * tw).enumerate() {
                let oy = 2 * t + a;
                if oy >= g.oh {
                    halves.fill(0.0);
                    continue;
                }
                // One pass over the row's pairs (vectorised; two strided passes were partly scalar).
                split_row(&plane[oy * g.ow..(oy + 1) * g.ow], 0, halves.split_at_mut(tw));
            }
            let (y0e, y0o, y1e, y1o) = (&y[..tw], &y[tw..2 * tw], &y[2 * tw..3 * tw], &y[3 * tw..]);
            let at = t0 + i * tw;
            // A y: the rows (y0, y0 + y1, y0 − y1, −y1), for the even and the odd columns ...
            let (ue, uo) = u.split_at_mut(4 * tw);
            lanes::a([y0e, y1e], split4(ue, tw));
            lanes::a([y0o, y1o], split4(uo, tw));
            // ... then each row (u0, u1) · Aᵀ = (u0, u0 + u1, u0 − u1, −u1).
            for (r, (u0, u1)) in ue.chunks_exact(tw).zip(uo.chunks_exact(tw)).enumerate() {
                // SAFETY: this band's tiles of channel k in four distinct planes (the caller's contract).
                let (m0, m1, m2, m3) = unsafe {
                    (
                        dm.seg(4 * r, k, at, tw),
                        dm.seg(4 * r + 1, k, at, tw),
                        dm.seg(4 * r + 2, k, at, tw),
                        dm.seg(4 * r + 3, k, at, tw),
                    )
                };
                lanes::a([u0, u1], [m0, m1, m2, m3]);
            }
        }
    }
}

/// The first four rows of `len` elements of `buf`.
fn split4(buf: &mut [f32], len: usize) -> [&mut [f32]; 4] {
    let (r0, rest) = buf.split_at_mut(len);
    let (r1, rest) = rest.split_at_mut(len);
    let (r2, rest) = rest.split_at_mut(len);
    [r0, r1, r2, &mut rest[..len]]
}

/// The transformed weight as the GEMMs read it: `U_ξ` (`[K][ξ][C]`, see [`weight_transform`]) for the forward
/// pass, `U_{p(ξ)}ᵀ` for the input gradient (whose convolution has the forward pass's channels swapped).
#[derive(Clone, Copy)]
struct WeightView<'a> {
    u: &'a [f32],
    transposed: bool,
}

impl WeightView<'_> {
    /// Offset of the point's matrix and its (column, row) strides, for a convolution with `c` input channels
    /// and `k` output channels (`U` itself was built for the forward pass).
    fn point(&self, xi: usize, c: usize, k: usize) -> (usize, (usize, usize)) {
        if self.transposed {
            // U was built as [c][ξ][k]; the point p(ξ) swaps the first and last rows and columns of the 4×4.
            let p = |i: usize| [3, 1, 2, 0][i];
            ((p(xi / 4) * 4 + p(xi % 4)) * k, (XI * k, 1))
        } else {
            (xi * c, (1, XI * c))
        }
    }
}

/// Each point's `U_ξ` packed once for the products of every band, where the GEMM packs its operands itself
/// (AMX bf16: otherwise each band's 16 products packed the whole transformed weight again — in ResNet-34's
/// 14 × 14 layers at 224 px, more values than the bands' transformed input).
fn pack_points(g: &Geometry, u: WeightView<'_>) -> Option<Vec<PackedLhs>> {
    assert_eq!(u.u.len(), XI * g.c * g.k, "transformed weight of the wrong size");
    let pack = |xi: usize| {
        let (at, strides) = u.point(xi, g.c, g.k);
        // SAFETY: the point's matrix lies inside `u` (16·C·K elements) for either layout.
        unsafe { pack_lhs_f32(g.k, g.c, u.u[at..].as_ptr(), strides) }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..XI).into_par_iter().map(pack).collect()
    }
    #[cfg(not(feature = "rayon"))]
    (0..XI).map(pack).collect()
}

/// `M_ξ (K × T) = U_ξ (K × C) · V_ξ (C × T)` for one point, single-threaded; `v` holds 16 planes of `C × T`, `m`
/// is the point's `K × T`; `packed`, where given, holds every point's `U_ξ` ([`pack_points`]).
fn product(
    xi: usize,
    g: &Geometry,
    u: WeightView<'_>,
    packed: Option<&[PackedLhs]>,
    v: &[f32],
    m: &mut [f32],
    t: usize,
) {
    let m = &mut m[..g.k * t];
    let v = &v[xi * g.c * t..(xi + 1) * g.c * t];
    if let Some(packed) = packed {
        // SAFETY: `packed[xi]` is this point's K × C matrix; `m` and `v` as sliced.
        unsafe {
            gemm_f32_packed(&packed[xi], t, m.as_mut_ptr(), (1, t), false, v.as_ptr(), (1, t), gemm::Parallelism::None)
        };
        return;
    }
    let (at, strides) = u.point(xi, g.c, g.k);
    assert_eq!(u.u.len(), XI * g.c * g.k, "transformed weight of the wrong size");
    // SAFETY: the point's matrix lies inside `u` (16·C·K elements) for either layout; `m` and `v` as sliced.
    unsafe {
        gemm_into(
            (g.k, t, g.c),
            m.as_mut_ptr(),
            t,
            false,
            u.u[at..].as_ptr(),
            strides,
            v.as_ptr(),
            (1, t),
            1.0f32,
            gemm::Parallelism::None,
        )
    };
}

/// The output tiles of the band's tile rows from `M` (16 planes of `K × stride`, the band's tiles from `t0`):
/// `Aᵀ m A` per tile, plus the bias, written into `out` (`[N, K, OH, OW]`), clipped at an odd last row or column.
/// `buf` holds 8 rows of `TW`.
///
/// # Safety
/// `out` must be valid for writes of the whole output, and no other thread may write this band's output rows.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(
    m: &[f32],
    stride: usize,
    t0: usize,
    g: &Geometry,
    rows: Range<usize>,
    bias: Option<&[f32]>,
    out: *mut f32,
    buf: &mut [f32],
) {
    let ks = g.k * stride;
    let tw = g.tw;
    let (r0, r1) = buf[..8 * tw].split_at_mut(4 * tw);
    for k in 0..g.k {
        let bv = bias.map_or(0.0, |b| b[k]);
        for (i, gr) in rows.clone().enumerate() {
            let (b, t) = g.locate(gr);
            let at = k * stride + t0 + i * tw;
            // Aᵀ m along the rows of the tile: r0 = m0 + m1 + m2, r1 = m1 − m2 − m3, for each column s.
            for s in 0..4 {
                let row = |r: usize| &m[(4 * r + s) * ks + at..(4 * r + s) * ks + at + tw];
                let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
                let (o0, o1) = (&mut r0[s * tw..(s + 1) * tw], &mut r1[s * tw..(s + 1) * tw]);
                lanes::at([m0, m1, m2, m3], [o0, o1]);
            }
            // ... then · A along its columns, into output rows 2t and 2t + 1.
            for (a, rr) in [&*r0, &*r1].into_iter().enumerate() {
                let oy = 2 * t + a;
                if oy >= g.oh {
                    continue;
                }
                // SAFETY: row `oy` of plane (b, k) lies inside the output and belongs to this band only.
                let orow =
                    unsafe { core::slice::from_raw_parts_mut(out.add(((b * g.k + k) * g.oh + oy) * g.ow), g.ow) };
                let (s0, s1, s2, s3) = (&rr[..tw], &rr[tw..2 * tw], &rr[2 * tw..3 * tw], &rr[3 * tw..]);
                lanes::at_pairs([s0, s1, s2, s3], bv, orow);
            }
        }
    }
}

/// Whether the deep-layer split applies: the transformed weight (16·K·C) at least as large as the whole batch's
/// transformed input and products (16·(C + K)·T).
fn by_point(g: &Geometry, n: usize) -> bool {
    g.k * g.c >= (g.c + g.k) * n * g.th * g.tw
}

/// The convolution of `x` (`[n, C, H, W]`) with the weight `[K, C, 3, 3]` (rotated and channel-swapped for the
/// input gradient), plus the bias: `[n, K, OH, OW]`.
fn convolve(x: &[f32], n: usize, g: &Geometry, w: &[f32], for_input_grad: bool, bias: Option<&[f32]>) -> Vec<f32> {
    // Not zeroed first: the output transforms write every element (a serial zeroing pass of tens of MiB was ~3 %
    // of a regularized CNN step at 224 px, with the other core idle). The length is set once they have.
    let len = n * g.k * g.oh * g.ow;
    let mut out = Vec::<f32>::with_capacity(len);
    let out_at = out.as_mut_ptr() as usize;
    let (tw, total) = (g.tw, n * g.th * g.tw);
    let whole_batch = by_point(g, n);
    let vm_len = if whole_batch { XI * (g.c + g.k) * total } else { 0 };
    scratch::with_held::<f32, _>([XI * g.k * g.c, vm_len], |u, vm| {
        // The weight is [K, C, 3, 3] of the forward pass: for the input gradient its C is this convolution's K.
        weight_transform(w, if for_input_grad { g.k } else { g.c }, u);
        let u = WeightView { u: &*u, transposed: for_input_grad };
        if !whole_batch {
            let packed = pack_points(g, u);
            let packed = packed.as_deref();
            // By band: each band transforms its tiles, multiplies and transforms back on its own.
            for_each_par(g.bands(n, BAND_ELEMS), |rows| {
                let tb = rows.len() * tw;
                scratch::with::<f32, _>([XI * g.c * tb + 8 * g.row_len(), XI * g.k * tb], |v, m| {
                    let (v, buf) = v.split_at_mut(XI * g.c * tb);
                    // SAFETY: the band's own buffers; `out` outlives the bands, which own disjoint output rows.
                    unsafe { input_transform(x, g, rows.clone(), 0, Planes::of(v, g.c, tb), buf) };
                    for xi in 0..XI {
                        product(xi, g, u, packed, v, &mut m[xi * g.k * tb..], tb);
                    }
                    unsafe { output_transform(m, tb, 0, g, rows, bias, out_at as *mut f32, buf) };
                })
            });
            return;
        }
        // By point: the whole batch transformed, one GEMM per point side by side, then transformed back.
        let bands = g.bands(n, BAND_ELEMS);
        let (v, m) = vm.split_at_mut(XI * g.c * total);
        let planes = Planes::of(v, g.c, total);
        for_each_par(bands.clone(), |rows| {
            scratch::with::<f32, _>([8 * g.row_len(), 0], |buf, _| {
                // SAFETY: bands write disjoint tiles of `v`.
                unsafe { input_transform(x, g, rows.clone(), rows.start * tw, planes, buf) };
            })
        });
        let v = &*v;
        chunks_par(m, g.k * total, |xi, m| product(xi, g, u, None, v, m, total));
        let m = &*m;
        for_each_par(bands, |rows| {
            scratch::with::<f32, _>([8 * tw, 0], |buf, _| {
                // SAFETY: `out` outlives the bands, which own disjoint output rows.
                unsafe { output_transform(m, total, rows.start * tw, g, rows, bias, out_at as *mut f32, buf) };
            })
        });
    });
    // SAFETY: the bands cover every tile row of every image, and `output_transform` writes every column of both
    // output rows of each (the last one alone where the output height or width is odd).
    unsafe { out.set_len(len) };
    out
}

fn contiguous_f32(t: &FlexTensor) -> &[f32] {
    t.storage()
}

/// Forward `conv2d` (see [`applies`]).
pub fn conv2d_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let [n, c, h, w] = dims4(&x);
    let k = dims4(&weight)[0];
    let g = Geometry::new(c, k, [h, w], options.padding);
    let bias = bias.map(|b| b.to_contiguous());
    let out = convolve(contiguous_f32(&x), n, &g, contiguous_f32(&weight), false, bias.as_ref().map(contiguous_f32));
    FlexTensor::new(
        burn_std::Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![n, k, g.oh, g.ow])),
        DType::F32,
    )
}

/// Input gradient (see [`applies`]): the output gradient convolved with the rotated, channel-swapped filters,
/// padded by `2 − padding`.
pub fn conv2d_x_backward(
    x_shape: [usize; 4],
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (weight, dy) = (weight.to_contiguous(), output_grad.to_contiguous());
    let [n, c, h, w] = x_shape;
    let [_, k, oh, ow] = dims4(&dy);
    let [ph, pw] = options.padding;
    let g = Geometry::new(k, c, [oh, ow], [2 - ph, 2 - pw]);
    debug_assert_eq!([g.oh, g.ow], [h, w]);
    let dx = convolve(contiguous_f32(&dy), n, &g, contiguous_f32(&weight), true, None);
    FlexTensor::new(burn_std::Bytes::from_elems(dx), Layout::contiguous(Shape::from(x_shape.to_vec())), DType::F32)
}

/// Weight gradient (see [`applies`]); shape `[C_out, C_in, 3, 3]`.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
    let [n, c, h, w] = dims4(&x);
    let k = weight_shape[0];
    let g = Geometry::new(c, k, [h, w], options.padding);
    let (x, dy) = (contiguous_f32(&x), contiguous_f32(&dy));
    let (tw, total) = (g.tw, n * g.th * g.tw);
    let len = XI * k * c;
    // dU_ξ (K × C) = Σ_tiles dM_ξ (K × T) · V_ξᵀ (T × C), laid out [ξ][K][C].
    let grad_product = |xi: usize, du: &mut [f32], dm: &[f32], v: &[f32], t: usize, accumulate: bool| {
        let (dm, v) = (&dm[xi * k * t..(xi + 1) * k * t], &v[xi * c * t..(xi + 1) * c * t]);
        let du = &mut du[..k * c];
        // SAFETY: the slices above are the operands, `V_ξ` read transposed.
        unsafe {
            gemm_into(
                (k, c, t),
                du.as_mut_ptr(),
                c,
                accumulate,
                dm.as_ptr(),
                (1, t),
                v.as_ptr(),
                (t, 1),
                1.0f32,
                gemm::Parallelism::None,
            )
        };
    };
    let mut dw = vec![0f32; k * c * 9];
    if !by_point(&g, n) {
        // By band: one partial dU per thread over a fixed, contiguous run of bands, the runs added in order.
        let bands = g.bands(n, GRAD_BAND_ELEMS);
        let per_thread = bands.len().div_ceil(threads()).max(1);
        let runs: Vec<Vec<Range<usize>>> = bands.chunks(per_thread).map(|r| r.to_vec()).collect();
        scratch::with_held::<f32, _>([runs.len() * len, 0], |acc, _| {
            chunks_par(acc, len, |run, du| {
                for (b, rows) in runs[run].iter().enumerate() {
                    let tb = rows.len() * tw;
                    scratch::with::<f32, _>([XI * c * tb + 8 * g.row_len(), XI * k * tb], |v, dm| {
                        let (v, buf) = v.split_at_mut(XI * c * tb);
                        // SAFETY: the band's own buffers.
                        unsafe {
                            input_transform(x, &g, rows.clone(), 0, Planes::of(v, c, tb), buf);
                            grad_output_transform(dy, &g, rows.clone(), 0, Planes::of(dm, k, tb), buf);
                        }
                        for xi in 0..XI {
                            grad_product(xi, &mut du[xi * k * c..], dm, v, tb, b > 0);
                        }
                    });
                }
            });
            let (first, rest) = acc.split_at_mut(len);
            for other in rest.chunks_exact(len) {
                first.iter_mut().zip(other).for_each(|(a, b)| *a += b);
            }
            weight_grad_transform(first, k, c, &mut dw);
        });
    } else {
        // By point: the whole batch transformed, then one GEMM per point side by side.
        let bands = g.bands(n, GRAD_BAND_ELEMS);
        scratch::with_held::<f32, _>([XI * (c + k) * total, len], |vm, du| {
            let (v, dm) = vm.split_at_mut(XI * c * total);
            let (vp, dmp) = (Planes::of(v, c, total), Planes::of(dm, k, total));
            for_each_par(bands, |rows| {
                scratch::with::<f32, _>([8 * g.row_len(), 0], |buf, _| {
                    // SAFETY: bands write disjoint tiles of `v` and `dm`.
                    unsafe {
                        input_transform(x, &g, rows.clone(), rows.start * tw, vp, buf);
                        grad_output_transform(dy, &g, rows.clone(), rows.start * tw, dmp, buf);
                    }
                })
            });
            let (v, dm) = (&*v, &*dm);
            chunks_par(du, k * c, |xi, du| grad_product(xi, du, dm, v, total, false));
            weight_grad_transform(du, k, c, &mut dw);
        });
    }
    FlexTensor::new(burn_std::Bytes::from_elems(dw), Layout::contiguous(Shape::from(weight_shape.to_vec())), DType::F32)
}

/// `dW = Gᵀ dU G` per filter, from `dU` laid out `[ξ][K][C]`, into `dw` (`[K, C, 3, 3]`), element-wise over the
/// input channels; `Gᵀ q = (q0 + (q1 + q2)/2, (q1 − q2)/2, (q1 + q2)/2 + q3)`.
fn weight_grad_transform(du: &[f32], k: usize, c: usize, dw: &mut [f32]) {
    chunks_par(dw, c * 9, |kk, out| {
        let planes: [&[f32]; XI] = core::array::from_fn(|xi| &du[xi * k * c + kk * c..xi * k * c + (kk + 1) * c]);
        if !lanes::weight_grad_block(planes, out) {
            weight_grad_block_by_rows(planes, out);
        }
    });
}

/// One output channel's filters of [`weight_grad_transform`] (`planes[ξ]` over `C`, into `out` as `[C, 3, 3]`) row
/// by row over `C`: where the CPU has no AVX-512 ([`lanes::weight_grad_block`] computes the same in one pass where
/// it has).
fn weight_grad_block_by_rows(planes: [&[f32]; XI], out: &mut [f32]) {
    let c = out.len() / 9;
    let plane = |r: usize, s: usize| planes[4 * r + s];
    // Along s for each row r (4 × 3 rows over C), then along r for each column b.
    scratch::with::<f32, _>([21 * c, 0], |tmp, _| {
        let (half, taps) = tmp.split_at_mut(12 * c);
        let gt = |q: [&[f32]; 4], dst: [&mut [f32]; 3]| {
            let [d0, d1, d2] = dst;
            for i in 0..c {
                let (q0, q1, q2, q3) = (q[0][i], q[1][i], q[2][i], q[3][i]);
                d0[i] = q0 + 0.5 * (q1 + q2);
                d1[i] = 0.5 * (q1 - q2);
                d2[i] = 0.5 * (q1 + q2) + q3;
            }
        };
        for (r, dst) in half.chunks_exact_mut(3 * c).enumerate() {
            let (d0, rest) = dst.split_at_mut(c);
            let (d1, d2) = rest.split_at_mut(c);
            gt([plane(r, 0), plane(r, 1), plane(r, 2), plane(r, 3)], [d0, d1, d2]);
        }
        let half = &*half;
        let at = |r: usize, b: usize| &half[(3 * r + b) * c..(3 * r + b + 1) * c];
        for b in 0..3 {
            // taps laid out [a][b] rows over C.
            let (t0, rest) = taps.split_at_mut(3 * c);
            let (t1, t2) = rest.split_at_mut(3 * c);
            let (d0, d1, d2) = (&mut t0[b * c..(b + 1) * c], &mut t1[b * c..(b + 1) * c], &mut t2[b * c..(b + 1) * c]);
            gt([at(0, b), at(1, b), at(2, b), at(3, b)], [d0, d1, d2]);
        }
        for ci in 0..c {
            for tap in 0..9 {
                out[ci * 9 + tap] = taps[tap * c + ci];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 31) % 193) as f32 - 96.0) / 13.0).collect()
    }

    /// The one-pass transforms of the weight and of its gradient give the row-wise paths' values to the bit, for
    /// channel counts that end mid-vector.
    #[test]
    fn weight_transforms_in_one_pass_match_the_row_wise_paths() {
        for c in [1, 5, 16, 17, 40] {
            let filters = values(9 * c, c);
            let (mut one_pass, mut by_rows) = (vec![f32::NAN; XI * c + 3], vec![f32::NAN; XI * c + 3]);
            weight_block_by_rows(&filters, &mut by_rows[..XI * c]);
            if !lanes::weight_block(&filters, &mut one_pass[..XI * c]) {
                eprintln!("skipped: no AVX-512 on this CPU");
                return;
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one_pass), bits(&by_rows), "weight transform, {c} channels");

            let du = values(XI * c, c + 1);
            let planes: [&[f32]; XI] = core::array::from_fn(|xi| &du[xi * c..(xi + 1) * c]);
            let (mut one_pass, mut by_rows) = (vec![f32::NAN; 9 * c + 3], vec![f32::NAN; 9 * c + 3]);
            weight_grad_block_by_rows(planes, &mut by_rows[..9 * c]);
            assert!(lanes::weight_grad_block(planes, &mut one_pass[..9 * c]));
            assert_eq!(bits(&one_pass), bits(&by_rows), "weight gradient transform, {c} channels");
        }
    }
}
