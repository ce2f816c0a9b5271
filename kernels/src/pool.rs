//! 2-D max pooling as a backend extension: [`MaxPool2dKernel`] has the pooling with and without indices and the
//! backward scatter, with the backend's own `ModuleOps` as defaults; `Flex` runs f32/f64 pooling without dilation
//! through [`max_pool2d_planes`] (each window's valid rows and columns clipped once per output row and column, a
//! branch-light loop for 2×2/2 windows, one task per plane) and the scatter one task per plane; `Autodiff`
//! records one operation whose backward pass is the scatter. Same values and indices as burn-flex's general loop
//! (first maximum in row-major window order wins; indices are positions within the input plane).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::Flex;
use burn::nn::pool::MaxPool2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor, ModuleOps};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};

/// Window size, stride, padding, dilation and ceil mode of a 2-D max pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

/// A backend that runs 2-D max pooling through these methods (defaults: its own `ModuleOps`).
pub trait MaxPool2dKernel: Backend {
    /// Pooled values only (inference).
    fn max_pool2d_kernel(x: FloatTensor<Self>, o: PoolOptions) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::max_pool2d(x, o.kernel, o.stride, o.padding, o.dilation, o.ceil_mode)
    }

    /// Pooled values and the index of each window's maximum within its input plane.
    fn max_pool2d_kernel_with_indices(x: FloatTensor<Self>, o: PoolOptions) -> (FloatTensor<Self>, IntTensor<Self>) {
        backend_with_indices::<Self>(x, o)
    }

    /// The input gradient: each output gradient added at its window's maximum.
    fn max_pool2d_kernel_backward(
        x: FloatTensor<Self>,
        o: PoolOptions,
        output_grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        backend_backward::<Self>(x, o, output_grad, indices)
    }
}

/// The backend's own pooling with indices (`ModuleOps`).
fn backend_with_indices<B: Backend>(x: FloatTensor<B>, o: PoolOptions) -> (FloatTensor<B>, IntTensor<B>) {
    let r = B::max_pool2d_with_indices(x, o.kernel, o.stride, o.padding, o.dilation, o.ceil_mode);
    (r.output, r.indices)
}

/// The backend's own backward scatter (`ModuleOps`).
fn backend_backward<B: Backend>(
    x: FloatTensor<B>,
    o: PoolOptions,
    output_grad: FloatTensor<B>,
    indices: IntTensor<B>,
) -> FloatTensor<B> {
    B::max_pool2d_with_indices_backward(x, o.kernel, o.stride, o.padding, o.dilation, o.ceil_mode, output_grad, indices)
        .x_grad
}

/// burn-flex's output size (the same rule, so that shapes agree with its other pooling paths).
fn pool_output_size(input: usize, kernel: usize, padding: usize, stride: usize, dilation: usize, ceil: bool) -> usize {
    let effective = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    if padded < effective {
        return usize::from(ceil);
    }
    let span = padded - effective;
    if ceil {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// Pools a contiguous f32/f64 tensor without dilation; `None` for other cases.
fn flex_pool(x: &FlexTensor, o: PoolOptions, with_indices: bool) -> Option<(FlexTensor, Option<FlexTensor>)> {
    if o.dilation != [1, 1] || o.kernel.contains(&0) || o.stride.contains(&0) || x.layout().shape().len() != 4 {
        return None;
    }
    let x = x.to_contiguous();
    let [n, c, in_h, in_w] = dims4(&x);
    let out_h = pool_output_size(in_h, o.kernel[0], o.padding[0], o.stride[0], 1, o.ceil_mode);
    let out_w = pool_output_size(in_w, o.kernel[1], o.padding[1], o.stride[1], 1, o.ceil_mode);
    let shape = || Layout::contiguous(Shape::from(vec![n, c, out_h, out_w]));
    let geometry = ([in_h, in_w], [out_h, out_w], o.kernel, o.stride, o.padding);
    let (values, indices) = match x.dtype() {
        DType::F32 => {
            let (v, i) = max_pool2d_planes(x.storage::<f32>(), n * c, geometry, f32::NEG_INFINITY, with_indices);
            (FlexTensor::new(Bytes::from_elems(v), shape(), DType::F32), i)
        }
        DType::F64 => {
            let (v, i) = max_pool2d_planes(x.storage::<f64>(), n * c, geometry, f64::NEG_INFINITY, with_indices);
            (FlexTensor::new(Bytes::from_elems(v), shape(), DType::F64), i)
        }
        _ => return None,
    };
    let indices = with_indices.then(|| FlexTensor::new(Bytes::from_elems(indices), shape(), DType::I64));
    Some((values, indices))
}

impl MaxPool2dKernel for Flex {
    fn max_pool2d_kernel(x: FloatTensor<Self>, o: PoolOptions) -> FloatTensor<Self> {
        match flex_pool(&x, o, false) {
            Some((v, _)) => v,
            None => <Self as ModuleOps<Self>>::max_pool2d(x, o.kernel, o.stride, o.padding, o.dilation, o.ceil_mode),
        }
    }

    fn max_pool2d_kernel_with_indices(x: FloatTensor<Self>, o: PoolOptions) -> (FloatTensor<Self>, IntTensor<Self>) {
        match flex_pool(&x, o, true) {
            Some((v, Some(i))) => (v, i),
            _ => backend_with_indices::<Self>(x, o),
        }
    }

    fn max_pool2d_kernel_backward(
        x: FloatTensor<Self>,
        o: PoolOptions,
        output_grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let [n, c, h, w] = dims4(&x);
        let plane_in = h * w;
        let (dy, idx) = (output_grad.to_contiguous(), indices.to_contiguous());
        if indices.dtype() != DType::I64 || o.dilation != [1, 1] {
            return backend_backward::<Self>(x, o, output_grad, indices);
        }
        let plane_out = dy.layout().shape()[2] * dy.layout().shape()[3];
        let layout = Layout::contiguous(Shape::from(vec![n, c, h, w]));
        match dy.dtype() {
            DType::F32 => {
                let dx = scatter(dy.storage::<f32>(), idx.storage::<i64>(), n * c, plane_in, plane_out);
                FlexTensor::new(Bytes::from_elems(dx), layout, DType::F32)
            }
            DType::F64 => {
                let dx = scatter(dy.storage::<f64>(), idx.storage::<i64>(), n * c, plane_in, plane_out);
                FlexTensor::new(Bytes::from_elems(dx), layout, DType::F64)
            }
            _ => backend_backward::<Self>(x, o, output_grad, indices),
        }
    }
}

#[cfg(feature = "cuda")]
impl MaxPool2dKernel for burn::backend::Cuda {}

/// Each plane's output gradients added at their maxima; planes are independent (indices are relative to their
/// plane), so they run one task each.
fn scatter<T>(dy: &[T], idx: &[i64], planes: usize, plane_in: usize, plane_out: usize) -> Vec<T>
where
    T: Copy + Default + Send + Sync + std::ops::AddAssign,
{
    if plane_in == 0 || plane_out == 0 {
        return vec![T::default(); planes * plane_in];
    }
    // Each task zeroes its own plane before adding into it: zeroing the whole gradient first ran on one thread.
    crate::fill::par_planes(planes * plane_in, plane_in, T::default(), |p, dx| {
        let (dy, idx) = (&dy[p * plane_out..(p + 1) * plane_out], &idx[p * plane_out..(p + 1) * plane_out]);
        for (&i, &g) in idx.iter().zip(dy) {
            if i >= 0 {
                dx[i as usize] += g;
            }
        }
    })
}

#[derive(Debug)]
struct MaxPool2dBackward;

impl<B: MaxPool2dKernel> Backward<B, 1> for MaxPool2dBackward {
    /// The input, the options and the indices of the maxima.
    type State = (FloatTensor<B>, PoolOptions, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, o, indices) = ops.state;
        if let Some(node) = node {
            grads.register::<B>(node.id, B::max_pool2d_kernel_backward(x, o, dy, indices));
        }
    }
}

impl<B: MaxPool2dKernel, C: CheckpointStrategy> MaxPool2dKernel for Autodiff<B, C> {
    fn max_pool2d_kernel(x: FloatTensor<Self>, o: PoolOptions) -> FloatTensor<Self> {
        Self::max_pool2d_kernel_with_indices(x, o).0
    }

    fn max_pool2d_kernel_with_indices(x: FloatTensor<Self>, o: PoolOptions) -> (FloatTensor<Self>, IntTensor<Self>) {
        let node = x.node.clone();
        let x = x.primitive;
        match MaxPool2dBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, indices) = B::max_pool2d_kernel_with_indices(x.clone(), o);
                (prep.finish((x, o, indices.clone()), y), indices)
            }
            OpsKind::UnTracked(prep) => {
                let (y, indices) = B::max_pool2d_kernel_with_indices(x, o);
                (prep.finish(y), indices)
            }
        }
    }
}

/// `pool` applied to `x` through [`MaxPool2dKernel`]: what burn's `MaxPool2d::forward` computes, with indices
/// kept for the backward pass only when autodiff is on. Asymmetric padding falls back to burn's own.
pub fn max_pool2d<B: MaxPool2dKernel>(pool: &MaxPool2d, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match pool.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => [top, left],
        _ => return pool.forward(x),
    };
    let o = PoolOptions {
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding,
        dilation: pool.dilation,
        ceil_mode: pool.ceil_mode,
    };
    let device = x.device();
    let x = x.into_primitive().tensor();
    let y = if B::ad_enabled(&device) { B::max_pool2d_kernel_with_indices(x, o).0 } else { B::max_pool2d_kernel(x, o) };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Input size, output size, window, stride and padding of a 2-D pooling without dilation.
pub type Geometry = ([usize; 2], [usize; 2], [usize; 2], [usize; 2], [usize; 2]);

/// Max pooling of `planes` independent 2-D planes (no dilation), with the same result and index convention as
/// burn-flex's general loop (first maximum in row-major window order wins; a window without valid taps gives
/// `neg_inf` and index -1). Each output row's window rows and each output column's window columns are clipped to
/// the input once, so the inner loop has no bounds checks; planes run in parallel. 2×2 windows with stride 2 and
/// no padding (every window whole) take a branch-light loop over row pairs, and `with_indices = false`
/// (inference) skips the index array (the second vector is then empty).
pub fn max_pool2d_planes<T>(
    x: &[T],
    planes: usize,
    ([in_h, in_w], [out_h, out_w], [kernel_h, kernel_w], [stride_h, stride_w], [pad_h, pad_w]): Geometry,
    neg_inf: T,
    with_indices: bool,
) -> (Vec<T>, Vec<i64>)
where
    T: bytemuck::Pod + Copy + PartialOrd + Send + Sync,
{
    let window = |o: usize, stride: usize, pad: usize, kernel: usize, len: usize| {
        let start = (o * stride) as isize - pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + kernel as isize).max(0) as usize).min(len);
        (lo, hi.max(lo))
    };
    let cols: Vec<(usize, usize)> = (0..out_w).map(|ow| window(ow, stride_w, pad_w, kernel_w, in_w)).collect();
    let plane_in = in_h * in_w;
    let plane_out = out_h * out_w;
    let two_by_two = [kernel_h, kernel_w, stride_h, stride_w] == [2, 2, 2, 2]
        && [pad_h, pad_w] == [0, 0]
        && 2 * out_h <= in_h
        && 2 * out_w <= in_w;
    let mut output = crate::fill::par_filled(planes * plane_out, plane_out, neg_inf);
    let mut indices =
        if with_indices { crate::fill::par_filled(planes * plane_out, plane_out, -1i64) } else { Vec::new() };
    // `idx` is empty when indices are not wanted.
    let pool_plane = |src: &[T], out: &mut [T], idx: &mut [i64]| {
        if two_by_two {
            for oh in 0..out_h {
                let top = &src[2 * oh * in_w..][..2 * out_w];
                let bottom = &src[(2 * oh + 1) * in_w..][..2 * out_w];
                let out_row = &mut out[oh * out_w..(oh + 1) * out_w];
                let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                if idx.is_empty() {
                    for (o, (t, b)) in out_row.iter_mut().zip(pairs) {
                        let mut best = t[0];
                        for v in [t[1], b[0], b[1]] {
                            if v > best {
                                best = v;
                            }
                        }
                        *o = best;
                    }
                } else {
                    let idx_row = &mut idx[oh * out_w..(oh + 1) * out_w];
                    let base = 2 * oh * in_w;
                    for (ow, ((o, i), (t, b))) in out_row.iter_mut().zip(idx_row.iter_mut()).zip(pairs).enumerate() {
                        let (mut best, mut at) = (t[0], 0);
                        for (v, off) in [(t[1], 1), (b[0], in_w), (b[1], in_w + 1)] {
                            if v > best {
                                best = v;
                                at = off;
                            }
                        }
                        *o = best;
                        *i = (base + 2 * ow + at) as i64;
                    }
                }
            }
            return;
        }
        for oh in 0..out_h {
            let (h0, h1) = window(oh, stride_h, pad_h, kernel_h, in_h);
            let out_row = &mut out[oh * out_w..(oh + 1) * out_w];
            for (ow, &(w0, w1)) in cols.iter().enumerate() {
                if h0 == h1 || w0 == w1 {
                    // No valid tap: `neg_inf` and index -1, as initialised.
                    continue;
                }
                // The first valid tap, then strictly greater ones (selects instead of a branch that
                // also tested for "no tap yet" on every tap).
                let mut best_at = h0 * in_w + w0;
                let mut best = src[best_at];
                for ih in h0..h1 {
                    let row = &src[ih * in_w + w0..ih * in_w + w1];
                    for (k, &v) in row.iter().enumerate() {
                        let greater = v > best;
                        best = if greater { v } else { best };
                        best_at = if greater { ih * in_w + w0 + k } else { best_at };
                    }
                }
                out_row[ow] = best;
                if !idx.is_empty() {
                    idx[oh * out_w + ow] = best_at as i64;
                }
            }
        }
    };
    if plane_out > 0 && plane_in > 0 {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            let planes_in = x.par_chunks(plane_in);
            if with_indices {
                planes_in
                    .zip(output.par_chunks_mut(plane_out).zip(indices.par_chunks_mut(plane_out)))
                    .for_each(|(src, (out, idx))| pool_plane(src, out, idx));
            } else {
                planes_in.zip(output.par_chunks_mut(plane_out)).for_each(|(src, out)| pool_plane(src, out, &mut []));
            }
        }
        #[cfg(not(feature = "rayon"))]
        if with_indices {
            x.chunks(plane_in)
                .zip(output.chunks_mut(plane_out).zip(indices.chunks_mut(plane_out)))
                .for_each(|(src, (out, idx))| pool_plane(src, out, idx));
        } else {
            x.chunks(plane_in).zip(output.chunks_mut(plane_out)).for_each(|(src, out)| pool_plane(src, out, &mut []));
        }
    }
    (output, indices)
}
