//! The forward pass and the weight gradient of stride-1 convolutions with few input channels
//! (f32, ungrouped, no dilation) — the models' first layer, RGB → 16 channels, 3×3 — as register-blocked direct
//! convolutions.
//!
//! burn-flex's small-channel kernel adds one weight times one input row into an output row per tap, so every
//! output element is loaded and stored `C_in · KH · KW` times (27 for a 3×3 RGB layer), and im2col + GEMM gives the
//! GEMM a reduction only 27 deep. Here a block of 8 output channels × 8 output columns stays in registers for all
//! the taps: per tap, one load of 8 inputs, 8 broadcast weights and 8 multiply-adds. On x86-64 with AVX2 and FMA
//! (detected at run time) that is one fused multiply-add per 8 outputs and tap; elsewhere the same code in the
//! baseline instruction set.
//!
//! The weight gradient (`dW[co, t] = Σ dY[co, y, x] · X[y + ky, x + kx]` over images and positions; im2col would
//! write a 27-row copy of the input first) keeps, per tap, 8 output channels × 8 columns of partial sums: per
//! column block, one load of 8 inputs, 8 loads of output-gradient rows (from a row buffer in L1) and 8
//! multiply-adds.
//!
//! Work is split by image and block of 8 output channels (contiguous in the output), so each output element is
//! written by one task and summed in a fixed order (input channel, kernel row, kernel column); the weight
//! gradient's per-image partial sums are added in image order: results do not depend on scheduling.
//! `PNEUMOSCOPE_SMALL_CONV=0` in the environment turns this path off.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::ConvOptions;
use burn_backend::DType;
use burn_std::Shape;

use super::im2col::dims4;
use burn_flex::{FlexTensor, Layout};

/// Most input channels taken (more and the GEMM paths have a deep enough reduction).
const MAX_C_IN: usize = 4;
/// Output channels per register block.
const CO: usize = 8;
/// Output columns per register block (one 256-bit vector of f32).
const XB: usize = 8;

#[cfg(feature = "std")]
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("PNEUMOSCOPE_SMALL_CONV").map_or(true, |v| v.trim() != "0"))
}

#[cfg(not(feature = "std"))]
fn enabled() -> bool {
    true
}

/// Whether this path takes a convolution of input `[N, C_in, H, W]` with weight `[C_out, C_in / groups, KH, KW]`
/// (f32 is the caller's check): at most [`MAX_C_IN`] input channels, stride 1, no dilation, no groups — except a
/// batch on AMX tiles, which the implicit GEMM (conv/implicit.rs) takes: the CNNs' first layer (3 → 16, 128 px,
/// batch 16) ran forward in 3.8–4.6 ms there against 6.6–7.6 ms here, forward and weight gradient in 11–14 against
/// 14.5–18 ms (`conv_layers`, 2-core Xeon with AMX, 2026-12-08).
pub fn applies(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> bool {
    let [n, c_in, h, w] = x;
    let [c_out, c_in_w, kh, kw] = weight;
    let [ph, pw] = options.padding;
    enabled()
        && options.groups == 1
        && c_in_w == c_in
        && (1..=MAX_C_IN).contains(&c_in)
        && c_out >= 1
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && kh >= 1
        && kw >= 1
        && h + 2 * ph >= kh
        && w + 2 * pw >= kw
        && !(crate::gemm_isa::on_amx_tiles() && n >= super::im2col::threads())
}

/// Forward `conv2d` (see [`applies`]).
pub fn conv2d_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    forward_tensor(x, weight, bias, options, false)
}

/// [`conv2d_forward`] in the baseline instruction set even where AVX2 and FMA are available (for tests: the
/// path other CPUs take).
pub fn conv2d_forward_baseline(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    forward_tensor(x, weight, bias, options, true)
}

fn forward_tensor(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
    baseline: bool,
) -> FlexTensor {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    let (n, k) = (dims4(&x)[0], dims4(&weight)[0]);
    let g = Geometry::new(dims4(&x), dims4(&weight), options);
    let out = forward(x.storage(), n, k, weight.storage(), bias.as_ref().map(|b| b.storage()), &g, baseline);
    FlexTensor::new(
        burn_std::Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![n, k, g.oh, g.ow])),
        DType::F32,
    )
}

/// Weight gradient (see [`applies`]); shape `[C_out, C_in, KH, KW]`.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
) -> FlexTensor {
    weight_grad_tensor(x, output_grad, weight_shape, options, false)
}

/// [`conv2d_weight_backward`] in the baseline instruction set (for tests, as [`conv2d_forward_baseline`]).
pub fn conv2d_weight_backward_baseline(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
) -> FlexTensor {
    weight_grad_tensor(x, output_grad, weight_shape, options, true)
}

fn weight_grad_tensor(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
    baseline: bool,
) -> FlexTensor {
    let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
    let (n, k) = (dims4(&x)[0], weight_shape[0]);
    let g = Geometry::new(dims4(&x), weight_shape, options);
    debug_assert_eq!(dims4(&dy), [n, k, g.oh, g.ow]);
    let dw = weight_grad(x.storage(), dy.storage(), n, k, &g, baseline);
    FlexTensor::new(burn_std::Bytes::from_elems(dw), Layout::contiguous(Shape::from(weight_shape.to_vec())), DType::F32)
}

fn weight_grad(x: &[f32], dy: &[f32], n: usize, k: usize, g: &Geometry, baseline: bool) -> Vec<f32> {
    let plane = g.oh * g.ow;
    let blocks = k.div_ceil(CO);
    let taps = g.c * g.kh * g.kw;
    // One task: image `b`, output channels `co0 .. co0 + nco`; its partial sums `[nco][taps]`.
    let task = |i: usize| -> Vec<f32> {
        let (b, co0) = (i / blocks, (i % blocks) * CO);
        let nco = CO.min(k - co0);
        let pad = padded(x, b, g);
        let dyb = &dy[(b * k + co0) * plane..][..nco * plane];
        let partial = grad_rows(&pad, dyb, nco, g, baseline);
        let mut out = vec![0f32; nco * taps];
        for t in 0..taps {
            for j in 0..nco {
                // The 8 column lanes, added in a fixed order.
                out[j * taps + t] = partial[t][j].iter().sum();
            }
        }
        out
    };
    #[cfg(feature = "rayon")]
    let parts: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        (0..n * blocks).into_par_iter().map(task).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let parts: Vec<Vec<f32>> = (0..n * blocks).map(task).collect();
    let mut dw = vec![0f32; k * taps];
    for (i, part) in parts.iter().enumerate() {
        let co0 = (i % blocks) * CO;
        for (d, p) in dw[co0 * taps..][..part.len()].iter_mut().zip(part) {
            *d += p;
        }
    }
    dw
}

/// Image `b` of `x`, zero-padded: one row of `g.row()` per padded input row and channel.
fn padded(x: &[f32], b: usize, g: &Geometry) -> Vec<f32> {
    let (rows, row) = (g.rows(), g.row());
    let mut pad = vec![0f32; g.c * rows * row];
    let img = &x[b * g.c * g.h * g.w..][..g.c * g.h * g.w];
    for ci in 0..g.c {
        for y in 0..g.h {
            let dst = &mut pad[(ci * rows + y + g.ph) * row + g.pw..][..g.w];
            dst.copy_from_slice(&img[(ci * g.h + y) * g.w..][..g.w]);
        }
    }
    pad
}

/// Partial weight-gradient sums of one image and block of `nco` channels (`dy`: their `nco` planes):
/// `[tap][channel][column lane]`.
fn grad_rows(pad: &[f32], dy: &[f32], nco: usize, g: &Geometry, baseline: bool) -> Vec<[[f32; XB]; CO]> {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if !baseline && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { grad_rows_fma(pad, dy, nco, g) };
        }
    }
    let _ = baseline;
    grad_rows_with(pad, dy, nco, g, |a, b, acc| a * b + acc)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_rows_fma(pad: &[f32], dy: &[f32], nco: usize, g: &Geometry) -> Vec<[[f32; XB]; CO]> {
    grad_rows_with(pad, dy, nco, g, |a, b, acc| a.mul_add(b, acc))
}

#[inline(always)]
fn grad_rows_with(
    pad: &[f32],
    dy: &[f32],
    nco: usize,
    g: &Geometry,
    madd: impl Fn(f32, f32, f32) -> f32 + Copy,
) -> Vec<[[f32; XB]; CO]> {
    let (rows, row, plane) = (g.rows(), g.row(), g.oh * g.ow);
    let owp = g.ow.div_ceil(XB) * XB;
    let mut acc = vec![[[0f32; XB]; CO]; g.c * g.kh * g.kw];
    // One output row of the block's gradient, column block by column block (`[block][channel][lane]`, so each
    // block's 8 channel vectors are adjacent), zero past the row's end and past the last channel.
    let mut dyrow = vec![0f32; owp * CO];
    for oy in 0..g.oh {
        for j in 0..nco {
            let src = &dy[j * plane + oy * g.ow..][..g.ow];
            for (b, part) in src.chunks(XB).enumerate() {
                dyrow[(b * CO + j) * XB..][..part.len()].copy_from_slice(part);
            }
        }
        let mut t = 0;
        for ci in 0..g.c {
            for ky in 0..g.kh {
                let src = &pad[(ci * rows + oy + ky) * row..][..row];
                for kx in 0..g.kw {
                    let mut a = acc[t];
                    for (b, ds) in dyrow.chunks_exact(CO * XB).enumerate() {
                        let ds: &[f32; CO * XB] = ds.try_into().unwrap();
                        let xs: [f32; XB] = src[b * XB + kx..][..XB].try_into().unwrap();
                        for (j, aj) in a.iter_mut().enumerate() {
                            for i in 0..XB {
                                aj[i] = madd(ds[j * XB + i], xs[i], aj[i]);
                            }
                        }
                    }
                    acc[t] = a;
                    t += 1;
                }
            }
        }
    }
    acc
}

#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    /// Input `[N, C, H, W]`, weight `[K, C, KH, KW]`, stride 1 (see [`applies`]).
    fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Self {
        let ([_, c, h, w], [_, _, kh, kw], [ph, pw]) = (x, weight, options.padding);
        Self { c, h, w, kh, kw, ph, pw, oh: h + 2 * ph + 1 - kh, ow: w + 2 * pw + 1 - kw }
    }

    /// Padded row length: the padded image plus room for the last block's columns past the output's end.
    fn row(&self) -> usize {
        self.ow.div_ceil(XB) * XB + self.kw - 1
    }
    fn rows(&self) -> usize {
        self.h + 2 * self.ph
    }
}

fn forward(
    x: &[f32],
    n: usize,
    k: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    baseline: bool,
) -> Vec<f32> {
    let plane = g.oh * g.ow;
    let blocks = k.div_ceil(CO);
    let mut out: Vec<f32> = Vec::with_capacity(n * k * plane);
    let taps = g.c * g.kh * g.kw;
    // One task: image `b`, output channels `co0 .. co0 + chunk.len() / plane`.
    let task = |(i, chunk): (usize, &mut [core::mem::MaybeUninit<f32>])| {
        let (b, co0) = (i / blocks, (i % blocks) * CO);
        let nco = chunk.len() / plane;
        let pad = padded(x, b, g);
        // The block's weights, tap-major: `wb[t * CO + j]` for tap t = (ci, ky, kx), channel co0 + j (zero past
        // the last channel).
        let mut wb = vec![0f32; taps * CO];
        for j in 0..nco {
            for t in 0..taps {
                wb[t * CO + j] = weight[(co0 + j) * taps + t];
            }
        }
        let mut bb = [0f32; CO];
        if let Some(bias) = bias {
            bb[..nco].copy_from_slice(&bias[co0..co0 + nco]);
        }
        block_rows(&pad, &wb, &bb, chunk, nco, g, baseline);
    };
    let spare = &mut out.spare_capacity_mut()[..n * k * plane];
    // Chunks of `CO` planes, restarting at each image (the last block of an image may be narrower).
    let mut chunks: Vec<&mut [core::mem::MaybeUninit<f32>]> = Vec::with_capacity(n * blocks);
    for image in spare.chunks_mut(k * plane) {
        chunks.extend(image.chunks_mut(CO * plane));
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        chunks.into_par_iter().enumerate().for_each(task);
    }
    #[cfg(not(feature = "rayon"))]
    chunks.into_iter().enumerate().for_each(task);
    // SAFETY: every element of the first n·k·plane was written by exactly one task (`block_rows` writes each
    // output row of each of its `nco` planes in full).
    unsafe { out.set_len(n * k * plane) };
    out
}

/// All output rows of one block of `nco` ≤ [`CO`] channels (`out`: `nco` planes of `oh × ow`).
fn block_rows(
    pad: &[f32],
    wb: &[f32],
    bias: &[f32; CO],
    out: &mut [core::mem::MaybeUninit<f32>],
    nco: usize,
    g: &Geometry,
    baseline: bool,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if !baseline && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { block_rows_fma(pad, wb, bias, out, nco, g) };
        }
    }
    let _ = baseline;
    block_rows_with(pad, wb, bias, out, nco, g, |w, x, acc| w * x + acc)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_rows_fma(
    pad: &[f32],
    wb: &[f32],
    bias: &[f32; CO],
    out: &mut [core::mem::MaybeUninit<f32>],
    nco: usize,
    g: &Geometry,
) {
    block_rows_with(pad, wb, bias, out, nco, g, |w, x, acc| w.mul_add(x, acc))
}

#[inline(always)]
fn block_rows_with(
    pad: &[f32],
    wb: &[f32],
    bias: &[f32; CO],
    out: &mut [core::mem::MaybeUninit<f32>],
    nco: usize,
    g: &Geometry,
    madd: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let (rows, row, plane) = (g.rows(), g.row(), g.oh * g.ow);
    for oy in 0..g.oh {
        for x0 in (0..g.ow).step_by(XB) {
            let mut acc = [[0f32; XB]; CO];
            let mut t = 0;
            for ci in 0..g.c {
                for ky in 0..g.kh {
                    let src = &pad[(ci * rows + oy + ky) * row + x0..][..XB + g.kw - 1];
                    for kx in 0..g.kw {
                        let xs: &[f32; XB] = src[kx..kx + XB].try_into().unwrap();
                        let ws: &[f32; CO] = wb[t * CO..t * CO + CO].try_into().unwrap();
                        for j in 0..CO {
                            for i in 0..XB {
                                acc[j][i] = madd(ws[j], xs[i], acc[j][i]);
                            }
                        }
                        t += 1;
                    }
                }
            }
            let len = XB.min(g.ow - x0);
            for j in 0..nco {
                let dst = &mut out[j * plane + oy * g.ow + x0..][..len];
                for (d, &a) in dst.iter_mut().zip(&acc[j][..len]) {
                    d.write(a + bias[j]);
                }
            }
        }
    }
}
