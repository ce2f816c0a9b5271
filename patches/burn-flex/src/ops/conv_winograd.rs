//! pneumoscope patch 10: 3×3, stride-1 convolutions (f32, ungrouped) as Winograd F(2×2, 3×3), forward pass, input
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
//! Work is cut into bands of tile rows (a tile row is one image's row of tiles; bands may span images), each band
//! its own transforms and single-threaded GEMMs, bands side by side on the thread pool, sized so a band's
//! transformed input and products stay within a few MiB. Every output element is written by one band; the weight
//! gradient's per-band products are summed in a fixed order (a fixed, contiguous run of bands per thread, runs
//! added in order), so results do not depend on scheduling. Used for batches of at least as many images as there
//! are threads; a single image keeps conv_im2col.rs's banded forward pass.
//!
//! `BURN_FLEX_WINOGRAD=0` in the environment turns this path off (for measuring it against im2col).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::Shape;
use core::ops::Range;

use super::conv_im2col::{dims4, gemm_into, scratch, threads};
use crate::{FlexTensor, Layout};

/// Points of the 4×4 transform.
const XI: usize = 16;

/// Fewest input and output channels for which the transforms pay for themselves (below that the GEMMs are too
/// thin and im2col wins).
const MIN_CHANNELS: usize = 16;

/// Transformed input plus products per band, in elements (4 MiB of f32), forward pass and input gradient.
const BAND_ELEMS: usize = 1 << 20;

/// The same for the weight gradient, whose per-band GEMMs add into a `C_out × C_in` matrix per point: larger bands
/// read and write that matrix fewer times.
const GRAD_BAND_ELEMS: usize = 2 << 20;

#[cfg(feature = "std")]
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("BURN_FLEX_WINOGRAD").map_or(true, |v| v.trim() != "0"))
}

#[cfg(not(feature = "std"))]
fn enabled() -> bool {
    true
}

/// Whether this path takes a convolution of input `[N, C_in, H, W]` with weight `[C_out, C_in / groups, KH, KW]`:
/// f32 is the caller's check; here 3×3, stride 1, no dilation, no groups, padding ≤ 2, at least
/// [`MIN_CHANNELS`] channels each way and at least as many images as threads.
pub fn applies(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> bool {
    let [n, c_in, h, w] = x;
    let [c_out, c_in_w, kh, kw] = weight;
    let [ph, pw] = options.padding;
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
        && n >= threads()
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

/// `U` for the GEMMs, laid out `[O][ξ][I]` (so `U_ξ` is `O × I` with row stride `16·I`): `(G f Gᵀ)` for each
/// 3×3 filter `f` of the weight `[K, C, 3, 3]` — as is for the forward pass (`O = K`, `I = C`), or rotated by 180°
/// with the channel axes swapped for the input gradient (`O = C`, `I = K`).
fn weight_transform(w: &[f32], k: usize, c: usize, for_input_grad: bool) -> Vec<f32> {
    let (no, ni) = if for_input_grad { (c, k) } else { (k, c) };
    let mut u = vec![0f32; no * XI * ni];
    let fill = |o: usize, block: &mut [f32]| {
        for i in 0..ni {
            let (kk, cc) = if for_input_grad { (i, o) } else { (o, i) };
            let f = &w[(kk * c + cc) * 9..(kk * c + cc + 1) * 9];
            let tap = |a: usize, b: usize| if for_input_grad { f[(2 - a) * 3 + (2 - b)] } else { f[a * 3 + b] };
            // G f (4 × 3), one column at a time, then each of its rows times Gᵀ.
            let mut gf = [[0f32; 3]; 4];
            for b in 0..3 {
                let (f0, f1, f2) = (tap(0, b), tap(1, b), tap(2, b));
                gf[0][b] = f0;
                gf[1][b] = 0.5 * (f0 + f1 + f2);
                gf[2][b] = 0.5 * (f0 - f1 + f2);
                gf[3][b] = f2;
            }
            for (r, [a0, a1, a2]) in gf.into_iter().enumerate() {
                let row = [a0, 0.5 * (a0 + a1 + a2), 0.5 * (a0 - a1 + a2), a2];
                for (s, v) in row.into_iter().enumerate() {
                    block[(4 * r + s) * ni + i] = v;
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        u.par_chunks_mut(XI * ni).enumerate().for_each(|(o, block)| fill(o, block));
    }
    #[cfg(not(feature = "rayon"))]
    u.chunks_mut(XI * ni).enumerate().for_each(|(o, block)| fill(o, block));
    u
}

/// `V[ξ][c][t] = (Bᵀ d B)[ξ]` for every tile `t` of the tile rows `rows` (`t` = row in band · TW + column) and
/// every channel. `buf` holds 8 padded rows ([`Geometry::row_len`]).
///
/// Each padded input row is kept as its even columns then its odd columns, so that both stages of the transform
/// are element-wise over contiguous runs (tile `t` reads padded columns `2t .. 2t + 4`: even `t`, `t + 1`, odd
/// `t`, `t + 1`).
fn input_transform(x: &[f32], g: &Geometry, rows: Range<usize>, v: &mut [f32], buf: &mut [f32]) {
    let tb = rows.len() * g.tw;
    let (wl, half, tw) = (g.row_len(), g.row_len() / 2, g.tw);
    let plane = g.h * g.w;
    let cs = g.c * tb;
    let (d, e) = buf[..8 * wl].split_at_mut(4 * wl);
    // Where input column 0 lands: padded column pw, in the even half if pw is even.
    let first = [g.pw % 2, 1 - g.pw % 2]; // first input column that lands in the even / odd half
    for c in 0..g.c {
        for (i, gr) in rows.clone().enumerate() {
            let (b, t) = g.locate(gr);
            let src = &x[(b * g.c + c) * plane..(b * g.c + c + 1) * plane];
            // The four padded input rows under tile row t, split into even and odd columns.
            for (r, row) in d.chunks_exact_mut(wl).enumerate() {
                row.fill(0.0);
                let ih = (2 * t + r) as isize - g.ph as isize;
                if ih < 0 || ih as usize >= g.h {
                    continue;
                }
                let srow = &src[ih as usize * g.w..(ih as usize + 1) * g.w];
                for (parity, part) in row.chunks_exact_mut(half).enumerate() {
                    let iw0 = first[parity];
                    if iw0 < g.w {
                        let at = (iw0 + g.pw) / 2;
                        part[at..].iter_mut().zip(srow[iw0..].iter().step_by(2)).for_each(|(d, &s)| *d = s);
                    }
                }
            }
            // Bᵀ d along the rows, whole rows at once ...
            let (d0, d1, d2, d3) = (&d[..wl], &d[wl..2 * wl], &d[2 * wl..3 * wl], &d[3 * wl..]);
            let (e0, rest) = e.split_at_mut(wl);
            let (e1, rest) = rest.split_at_mut(wl);
            let (e2, e3) = rest.split_at_mut(wl);
            for j in 0..wl {
                e0[j] = d0[j] - d2[j];
                e1[j] = d1[j] + d2[j];
                e2[j] = d2[j] - d1[j];
                e3[j] = d1[j] - d3[j];
            }
            // ... then · B along the columns: q0 − q2, q1 + q2, q2 − q1, q1 − q3 with q0 = even[t], q1 = odd[t],
            // q2 = even[t + 1], q3 = odd[t + 1].
            let at = c * tb + i * tw;
            for (r, er) in e.chunks_exact(wl).enumerate() {
                let (ev, od) = er.split_at(half);
                let (q0, q1, q2, q3) = (&ev[..tw], &od[..tw], &ev[1..=tw], &od[1..=tw]);
                let planes = &mut v[4 * r * cs..(4 * r + 4) * cs];
                let (v0, rest) = planes.split_at_mut(cs);
                let (v1, rest) = rest.split_at_mut(cs);
                let (v2, v3) = rest.split_at_mut(cs);
                let (v0, v1) = (&mut v0[at..at + tw], &mut v1[at..at + tw]);
                let (v2, v3) = (&mut v2[at..at + tw], &mut v3[at..at + tw]);
                for j in 0..tw {
                    v0[j] = q0[j] - q2[j];
                    v1[j] = q1[j] + q2[j];
                    v2[j] = q2[j] - q1[j];
                    v3[j] = q1[j] - q3[j];
                }
            }
        }
    }
}

/// `M_ξ (K × T) = U_ξ (K × C) · V_ξ (C × T)` for the 16 points, single-threaded (bands run side by side).
fn products(u: &[f32], v: &[f32], m: &mut [f32], g: &Geometry, tb: usize) {
    for xi in 0..XI {
        let (dst, lhs, rhs) = (m[xi * g.k * tb..].as_mut_ptr(), u[xi * g.c..].as_ptr(), v[xi * g.c * tb..].as_ptr());
        // SAFETY: `m` holds 16 planes of K × T, `u` is [K][16][C] (row stride 16·C), `v` 16 planes of C × T.
        unsafe {
            gemm_into((g.k, tb, g.c), dst, tb, false, lhs, (1, XI * g.c), rhs, (1, tb), 1.0f32, gemm::Parallelism::None)
        };
    }
}

/// The output tiles of the band's tile rows from `M`: `Aᵀ m A` per tile, plus the bias, written into `out`
/// (`[N, K, OH, OW]`), clipped at an odd last row or column. `buf` holds 8 rows of `TW`.
///
/// # Safety
/// `out` must be valid for writes of the whole output, and no other thread may write this band's output rows.
unsafe fn output_transform(
    m: &[f32],
    g: &Geometry,
    rows: Range<usize>,
    bias: Option<&[f32]>,
    out: *mut f32,
    buf: &mut [f32],
) {
    let tb = rows.len() * g.tw;
    let ks = g.k * tb;
    let tw = g.tw;
    let (r0, r1) = buf[..8 * tw].split_at_mut(4 * tw);
    let pairs = g.ow / 2;
    for k in 0..g.k {
        let bv = bias.map_or(0.0, |b| b[k]);
        for (i, gr) in rows.clone().enumerate() {
            let (b, t) = g.locate(gr);
            let at = k * tb + i * tw;
            // Aᵀ m along the rows of the tile: r0 = m0 + m1 + m2, r1 = m1 − m2 − m3, for each column s.
            for s in 0..4 {
                let row = |r: usize| &m[(4 * r + s) * ks + at..(4 * r + s) * ks + at + tw];
                let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
                let (o0, o1) = (&mut r0[s * tw..(s + 1) * tw], &mut r1[s * tw..(s + 1) * tw]);
                for j in 0..tw {
                    o0[j] = m0[j] + m1[j] + m2[j];
                    o1[j] = m1[j] - m2[j] - m3[j];
                }
            }
            // ... then · A along its columns, into output rows 2t and 2t + 1.
            for (a, rr) in [&*r0, &*r1].into_iter().enumerate() {
                let oy = 2 * t + a;
                if oy >= g.oh {
                    continue;
                }
                // SAFETY: row `oy` of plane (b, k) lies inside the output and belongs to this band only.
                let orow = unsafe { core::slice::from_raw_parts_mut(out.add(((b * g.k + k) * g.oh + oy) * g.ow), g.ow) };
                let (s0, s1, s2, s3) = (&rr[..tw], &rr[tw..2 * tw], &rr[2 * tw..3 * tw], &rr[3 * tw..]);
                for (j, o) in orow[..2 * pairs].chunks_exact_mut(2).enumerate() {
                    o[0] = s0[j] + s1[j] + s2[j] + bv;
                    o[1] = s1[j] - s2[j] - s3[j] + bv;
                }
                if g.ow % 2 == 1 {
                    orow[g.ow - 1] = s0[pairs] + s1[pairs] + s2[pairs] + bv;
                }
            }
        }
    }
}

/// The convolution of `x` (`[n, C, H, W]`) with the transformed weight `u` (see [`weight_transform`]), plus the
/// bias: `[n, K, OH, OW]`.
fn convolve(x: &[f32], n: usize, g: &Geometry, u: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; n * g.k * g.oh * g.ow];
    let out_at = out.as_mut_ptr() as usize;
    let band = |rows: Range<usize>| {
        let tb = rows.len() * g.tw;
        scratch::with::<f32, _>([XI * g.c * tb + 8 * g.row_len(), XI * g.k * tb], |v, m| {
            let (v, buf) = v.split_at_mut(XI * g.c * tb);
            input_transform(x, g, rows.clone(), v, buf);
            products(u, v, m, g, tb);
            // SAFETY: `out` outlives the bands, and bands own disjoint output rows.
            unsafe { output_transform(m, g, rows, bias, out_at as *mut f32, buf) };
        })
    };
    let bands = g.bands(n, BAND_ELEMS);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        bands.into_par_iter().for_each(band);
    }
    #[cfg(not(feature = "rayon"))]
    bands.into_iter().for_each(band);
    out
}

fn contiguous_f32(t: &FlexTensor) -> &[f32] {
    t.storage()
}

/// Forward `conv2d` (see [`applies`]).
pub fn conv2d_forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, options: &ConvOptions<2>) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let [n, c, h, w] = dims4(&x);
    let k = dims4(&weight)[0];
    let g = Geometry::new(c, k, [h, w], options.padding);
    let u = weight_transform(contiguous_f32(&weight), k, c, false);
    let bias = bias.map(|b| b.to_contiguous());
    let out = convolve(contiguous_f32(&x), n, &g, &u, bias.as_ref().map(contiguous_f32));
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
    let u = weight_transform(contiguous_f32(&weight), k, c, true);
    let dx = convolve(contiguous_f32(&dy), n, &g, &u, None);
    FlexTensor::new(burn_std::Bytes::from_elems(dx), Layout::contiguous(Shape::from(x_shape.to_vec())), DType::F32)
}

/// `dM[ξ][k][t] = (A y Aᵀ)[ξ]` for each 2×2 output-gradient tile `y` of the band (zero past an odd last row or
/// column). `buf` holds 6 rows of `TW`.
fn grad_output_transform(dy: &[f32], g: &Geometry, rows: Range<usize>, dm: &mut [f32], buf: &mut [f32]) {
    let (tw, tb) = (g.tw, rows.len() * g.tw);
    let ks = g.k * tb;
    let oplane = g.oh * g.ow;
    let (y, u) = buf[..6 * tw].split_at_mut(4 * tw);
    for k in 0..g.k {
        for (i, gr) in rows.clone().enumerate() {
            let (b, t) = g.locate(gr);
            let plane = &dy[(b * g.k + k) * oplane..(b * g.k + k + 1) * oplane];
            // The tile row's two output rows as even and odd columns: y = [y0 even, y0 odd, y1 even, y1 odd].
            y.fill(0.0);
            for (a, halves) in y.chunks_exact_mut(2 * tw).enumerate() {
                let oy = 2 * t + a;
                if oy >= g.oh {
                    continue;
                }
                let orow = &plane[oy * g.ow..(oy + 1) * g.ow];
                let (even, odd) = halves.split_at_mut(tw);
                even.iter_mut().zip(orow.iter().step_by(2)).for_each(|(d, &s)| *d = s);
                odd.iter_mut().zip(orow.iter().skip(1).step_by(2)).for_each(|(d, &s)| *d = s);
            }
            let (y0e, y0o, y1e, y1o) = (&y[..tw], &y[tw..2 * tw], &y[2 * tw..3 * tw], &y[3 * tw..]);
            let at = k * tb + i * tw;
            // A y: the rows (y0, y0 + y1, y0 − y1, −y1); each row (u0, u1) · Aᵀ = (u0, u0 + u1, u0 − u1, −u1).
            for r in 0..4 {
                let (u0, u1) = u.split_at_mut(tw);
                for j in 0..tw {
                    (u0[j], u1[j]) = match r {
                        0 => (y0e[j], y0o[j]),
                        1 => (y0e[j] + y1e[j], y0o[j] + y1o[j]),
                        2 => (y0e[j] - y1e[j], y0o[j] - y1o[j]),
                        _ => (-y1e[j], -y1o[j]),
                    };
                }
                let planes = &mut dm[4 * r * ks..(4 * r + 4) * ks];
                let (m0, rest) = planes.split_at_mut(ks);
                let (m1, rest) = rest.split_at_mut(ks);
                let (m2, m3) = rest.split_at_mut(ks);
                let (m0, m1) = (&mut m0[at..at + tw], &mut m1[at..at + tw]);
                let (m2, m3) = (&mut m2[at..at + tw], &mut m3[at..at + tw]);
                for j in 0..tw {
                    m0[j] = u0[j];
                    m1[j] = u0[j] + u1[j];
                    m2[j] = u0[j] - u1[j];
                    m3[j] = -u1[j];
                }
            }
        }
    }
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
    let len = k * XI * c;
    // dU laid out [K][ξ][C]: dU_ξ (K × C, row stride 16·C) += dM_ξ (K × T) · V_ξᵀ (T × C), band by band.
    let run = |bands: &[Range<usize>]| -> Vec<f32> {
        let mut du = vec![0f32; len];
        for rows in bands {
            let tb = rows.len() * g.tw;
            scratch::with::<f32, _>([XI * c * tb + 8 * g.row_len(), XI * k * tb], |v, dm| {
                let (v, buf) = v.split_at_mut(XI * c * tb);
                input_transform(x, &g, rows.clone(), v, buf);
                grad_output_transform(dy, &g, rows.clone(), dm, buf);
                for xi in 0..XI {
                    let (dst, lhs) = (du[xi * c..].as_mut_ptr(), dm[xi * k * tb..].as_ptr());
                    let rhs = v[xi * c * tb..].as_ptr();
                    // SAFETY: `du` is [K][16][C]; `dm` 16 planes of K × T; `v` 16 planes of C × T, read transposed.
                    unsafe {
                        gemm_into((k, c, tb), dst, XI * c, true, lhs, (1, tb), rhs, (tb, 1), 1.0f32, gemm::Parallelism::None)
                    };
                }
            });
        }
        du
    };
    let bands = g.bands(n, GRAD_BAND_ELEMS);
    let per_thread = bands.len().div_ceil(threads()).max(1);
    let add = |mut a: Vec<f32>, b: Vec<f32>| {
        a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
        a
    };
    // A fixed, contiguous run of bands per thread, the runs added in order: the same sums every time.
    #[cfg(feature = "rayon")]
    let runs: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        bands.par_chunks(per_thread).map(run).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let runs: Vec<Vec<f32>> = bands.chunks(per_thread).map(run).collect();
    let du = runs.into_iter().reduce(add).unwrap_or_else(|| vec![0f32; len]);
    // dW = Gᵀ dU G per filter; Gᵀ q = (q0 + (q1 + q2)/2, (q1 − q2)/2, (q1 + q2)/2 + q3).
    let gt = |q: [f32; 4]| [q[0] + 0.5 * (q[1] + q[2]), 0.5 * (q[1] - q[2]), 0.5 * (q[1] + q[2]) + q[3]];
    let mut dw = vec![0f32; k * c * 9];
    for (block, out) in du.chunks_exact(XI * c).zip(dw.chunks_exact_mut(c * 9)) {
        for ci in 0..c {
            let at = |r: usize, s: usize| block[(4 * r + s) * c + ci];
            // Along s for each row r, then along r.
            let rows: [[f32; 3]; 4] = core::array::from_fn(|r| gt([at(r, 0), at(r, 1), at(r, 2), at(r, 3)]));
            for b in 0..3 {
                let col = gt([rows[0][b], rows[1][b], rows[2][b], rows[3][b]]);
                for a in 0..3 {
                    out[ci * 9 + a * 3 + b] = col[a];
                }
            }
        }
    }
    FlexTensor::new(
        burn_std::Bytes::from_elems(dw),
        Layout::contiguous(Shape::from(weight_shape.to_vec())),
        DType::F32,
    )
}
