//! pneumoscope patches 4 and 5: a 2D convolution's weight gradient and forward pass as whole-image im2col + GEMM.
//!
//! burn-backend's default `conv2d_weight_backward` runs a forward convolution of the batch-transposed input with
//! the batch-transposed output gradient as its kernel (kernel size = output size). On burn-flex that becomes an
//! im2col with `out_h · out_w · batch` rows per output position and a GEMM only nine columns wide for a 3×3
//! kernel: measured at half the forward pass's GFLOP/s. Here the gradient is the textbook product instead:
//!
//! `dW[co, (ci, kh, kw)] = Σ_(n, oh, ow) dY[n, co, oh, ow] · X[n, ci, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw]`
//!
//! i.e. `dW = dYᵀ · cols`, where `dYᵀ` is the output gradient as `[C_out, N·P]` (P = out_h · out_w) and `cols`
//! the im2col matrix `[C_in·KH·KW, N·P]`, built for a chunk of the batch at a time so it stays cache-sized, each
//! chunk accumulated into `dW` by gemm (M = C_out, N = C_in·KH·KW, K = chunk · P). Groups take their rows of
//! `dYᵀ` and `cols`. f32 and f64 run natively; f16/bf16 go through f32 (module.rs).

use alloc::vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_backend::ops::conv::calculate_conv_output_size;
use burn_std::Shape;

use crate::{FlexTensor, Layout};

/// Largest im2col chunk, in elements (16 MiB of f32).
const COLS_BUDGET: usize = 4 << 20;

/// Weight gradient of a `conv2d` over f32 or f64 (`T`, `dtype`); shape `[C_out, C_in / groups, KH, KW]`.
pub fn conv2d_weight_backward<T: burn_backend::Element + bytemuck::Pod + Default + Send + Sync + 'static>(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
    dtype: DType,
    one: T,
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let [n, c_in, in_h, in_w]: [usize; 4] = x.layout().shape().dims();
    let [_, c_out, out_h, out_w]: [usize; 4] = dy.layout().shape().dims();
    let [_, c_in_group, kh, kw] = weight_shape;
    let groups = options.groups.max(1);
    let c_out_group = c_out / groups;
    let p = out_h * out_w;
    let r_group = c_in_group * kh * kw;
    let x_data: &[T] = x.storage();
    let dy_data: &[T] = dy.storage();

    // dY as [C_out, N·P]: one contiguous row per output channel across the whole batch.
    let mut dy_t = vec![T::default(); c_out * n * p];
    for b in 0..n {
        for co in 0..c_out {
            let src = &dy_data[(b * c_out + co) * p..(b * c_out + co + 1) * p];
            dy_t[co * n * p + b * p..co * n * p + (b + 1) * p].copy_from_slice(src);
        }
    }

    let geometry = Geometry::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options);
    // Row g·C_out_group + co of the gradient holds that output channel's C_in_group·KH·KW taps.
    let mut grad = vec![T::default(); c_out * r_group];
    for_each_cols_chunk(x_data, n, &geometry, |b0, nb, cols| {
        let width = nb * p;
        for g in 0..groups {
            // grad[g] (C_out_group × R_group) += dYᵀ[g rows, b0·P ..] (C_out_group × width) · cols[g rows]ᵀ
            unsafe {
                gemm::gemm(
                    c_out_group,
                    r_group,
                    width,
                    grad.as_mut_ptr().add(g * c_out_group * r_group),
                    1,
                    r_group as isize,
                    b0 > 0,
                    dy_t.as_ptr().add(g * c_out_group * n * p + b0 * p),
                    1,
                    (n * p) as isize,
                    cols.as_ptr().add(g * r_group * width),
                    width as isize,
                    1,
                    one,
                    one,
                    false,
                    false,
                    false,
                    parallelism(c_out_group, r_group, width),
                );
            }
        }
    });
    FlexTensor::new(
        burn_std::Bytes::from_elems(grad),
        Layout::contiguous(Shape::from(weight_shape.to_vec())),
        dtype,
    )
}

struct Geometry {
    c_in: usize,
    in_h: usize,
    in_w: usize,
    kh: usize,
    kw: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(
        [c_in, in_h, in_w]: [usize; 3],
        [kh, kw]: [usize; 2],
        [out_h, out_w]: [usize; 2],
        options: &ConvOptions<2>,
    ) -> Self {
        let (stride, padding, dilation) = (options.stride, options.padding, options.dilation);
        Self { c_in, in_h, in_w, kh, kw, out_h, out_w, stride, padding, dilation }
    }
}

/// Calls `f(b0, nb, cols)` for each chunk of the batch (images `b0 .. b0 + nb`) with the chunk's im2col matrix
/// `[C_in·KH·KW, nb·P]`, chunks sized to stay within [`COLS_BUDGET`]; one buffer serves every chunk.
fn for_each_cols_chunk<T: Copy + Default + Send + Sync>(
    x: &[T],
    n: usize,
    g: &Geometry,
    mut f: impl FnMut(usize, usize, &[T]),
) {
    let p = g.out_h * g.out_w;
    let r = g.c_in * g.kh * g.kw;
    let chunk = (COLS_BUDGET / (r * p).max(1)).clamp(1, n.max(1));
    let mut cols = vec![T::default(); r * chunk * p];
    for b0 in (0..n).step_by(chunk) {
        let nb = chunk.min(n - b0);
        let cols = &mut cols[..r * nb * p];
        im2col_rows(x, b0, nb, g, cols);
        f(b0, nb, cols);
    }
}

/// Fills `cols` (`[C_in·KH·KW, nb·P]`, row-major) for batch items `b0 .. b0 + nb`; taps that fall in the
/// padding are zero. Rows are independent, so they are built in parallel.
fn im2col_rows<T: Copy + Default + Send + Sync>(x: &[T], b0: usize, nb: usize, g: &Geometry, cols: &mut [T]) {
    let p = g.out_h * g.out_w;
    let width = nb * p;
    let plane = g.in_h * g.in_w;
    let zero = T::default();
    let fill_row = |row: usize, out: &mut [T]| {
        let ci = row / (g.kh * g.kw);
        let k = row % (g.kh * g.kw);
        let (ki, kj) = (k / g.kw, k % g.kw);
        for j in 0..nb {
            let src = &x[((b0 + j) * g.c_in + ci) * plane..((b0 + j) * g.c_in + ci + 1) * plane];
            let dst = &mut out[j * p..(j + 1) * p];
            for oh in 0..g.out_h {
                let drow = &mut dst[oh * g.out_w..(oh + 1) * g.out_w];
                let ih = (oh * g.stride[0] + ki * g.dilation[0]) as isize - g.padding[0] as isize;
                if ih < 0 || ih >= g.in_h as isize {
                    drow.fill(zero);
                    continue;
                }
                let srow = &src[ih as usize * g.in_w..(ih as usize + 1) * g.in_w];
                let shift = (kj * g.dilation[1]) as isize - g.padding[1] as isize;
                if g.stride[1] == 1 {
                    // Valid output columns: 0 <= ow + shift < in_w.
                    let lo = (-shift).clamp(0, g.out_w as isize) as usize;
                    let hi = (g.in_w as isize - shift).clamp(lo as isize, g.out_w as isize) as usize;
                    drow[..lo].fill(zero);
                    drow[lo..hi].copy_from_slice(&srow[(lo as isize + shift) as usize..(hi as isize + shift) as usize]);
                    drow[hi..].fill(zero);
                } else {
                    for (ow, d) in drow.iter_mut().enumerate() {
                        let iw = (ow * g.stride[1]) as isize + shift;
                        *d = if iw >= 0 && iw < g.in_w as isize { srow[iw as usize] } else { zero };
                    }
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        cols.par_chunks_mut(width).enumerate().for_each(|(row, out)| fill_row(row, out));
    }
    #[cfg(not(feature = "rayon"))]
    cols.chunks_mut(width).enumerate().for_each(|(row, out)| fill_row(row, out));
}

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        return gemm::Parallelism::Rayon(0);
    }
    let _ = (m, n, k);
    gemm::Parallelism::None
}


/// Forward `conv2d` as whole-image im2col + one GEMM per image (M = C_out, K = C_in·KH·KW, N = out_h · out_w),
/// for f32/f64 with `groups == 1`. burn-flex's tiled path multiplies 512 output positions at a time, which
/// leaves gemm little to work with when K is small (the first layer of an image model: 3 channels × 3×3 taps).
pub fn conv2d_forward<
    T: burn_backend::Element + bytemuck::Pod + Default + Send + Sync + core::ops::Add<Output = T> + 'static,
>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
    dtype: DType,
    one: T,
) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let [n, c_in, in_h, in_w]: [usize; 4] = x.layout().shape().dims();
    let [c_out, _, kh, kw]: [usize; 4] = weight.layout().shape().dims();
    let out_h = calculate_conv_output_size(kh, options.stride[0], options.padding[0], options.dilation[0], in_h);
    let out_w = calculate_conv_output_size(kw, options.stride[1], options.padding[1], options.dilation[1], in_w);
    let p = out_h * out_w;
    let r = c_in * kh * kw;
    let geometry = Geometry::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options);
    let x_data: &[T] = x.storage();
    let w_data: &[T] = weight.storage();
    let mut out = vec![T::default(); n * c_out * p];
    for_each_cols_chunk(x_data, n, &geometry, |b0, nb, cols| {
        let width = nb * p;
        for j in 0..nb {
            // out[b0 + j] (C_out × P) = W (C_out × R) · cols[:, j·P ..] (R × P)
            unsafe {
                gemm::gemm(
                    c_out,
                    p,
                    r,
                    out.as_mut_ptr().add((b0 + j) * c_out * p),
                    1,
                    p as isize,
                    false,
                    w_data.as_ptr(),
                    1,
                    r as isize,
                    cols.as_ptr().add(j * p),
                    1,
                    width as isize,
                    one,
                    one,
                    false,
                    false,
                    false,
                    parallelism(c_out, p, r),
                );
            }
        }
    });
    if let Some(bias) = bias {
        let bias = bias.to_contiguous();
        let b: &[T] = bias.storage();
        // Planes run image by image, channel by channel.
        for (i, plane) in out.chunks_mut(p).enumerate() {
            let v = b[i % c_out];
            for o in plane.iter_mut() {
                *o = *o + v;
            }
        }
    }
    FlexTensor::new(
        burn_std::Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![n, c_out, out_h, out_w])),
        dtype,
    )
}

/// Whether [`conv2d_forward`] takes this convolution: `groups == 1`, not 1×1 (burn-flex's own 1×1 path multiplies
/// without im2col) and not burn-flex's direct small-channel case (≤ 4 in, ≤ 16 out). Measured no slower than the
/// tiled path on every layer shape of pneumoscope's three models, and up to twice as fast on the large ones.
pub fn use_whole_image_forward(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> bool {
    let w = weight.layout().shape();
    let c_in = x.layout().shape()[1];
    options.groups == 1 && !(w[2] == 1 && w[3] == 1) && !(c_in <= 4 && w[0] <= 16)
}
