//! Shared macros and helpers for forward and transposed convolution.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape, bf16};

use crate::{FlexTensor, Layout};

// ============================================================================
// Macros for dtype wrappers
// ============================================================================

/// Generates a convNd function that delegates to a conv3d function via expand/squeeze.
macro_rules! conv_nd_via_3d {
    ($fn_name:ident, $conv3d_fn:ident, $expand_fn:ident, $squeeze_fn:ident, $dim:literal, $Options:ident) => {
        pub fn $fn_name(
            x: FlexTensor,
            weight: FlexTensor,
            bias: Option<FlexTensor>,
            options: &$Options<$dim>,
        ) -> FlexTensor {
            let (x_3d, weight_3d, options_3d) = $expand_fn(&x, &weight, options);
            let result_3d = $conv3d_fn(x_3d, weight_3d, bias, &options_3d);
            $squeeze_fn(result_3d)
        }
    };
}

/// Generates a bf16 function that converts to f32, calls the f32 variant, converts back.
macro_rules! bf16_via_f32 {
    ($bf16_fn:ident, $f32_fn:ident, $dim:literal, $Options:ident) => {
        pub fn $bf16_fn(
            x: FlexTensor,
            weight: FlexTensor,
            bias: Option<FlexTensor>,
            options: &$Options<$dim>,
        ) -> FlexTensor {
            let x_f32 = $crate::ops::conv_common::convert_bf16_to_f32(&x);
            let weight_f32 = $crate::ops::conv_common::convert_bf16_to_f32(&weight);
            let bias_f32 = bias.map(|b| $crate::ops::conv_common::convert_bf16_to_f32(&b));
            let result_f32 = $f32_fn(x_f32, weight_f32, bias_f32, options);
            $crate::ops::conv_common::convert_f32_to_bf16(&result_f32)
        }
    };
}

// ============================================================================
// Squeeze helpers (used by both conv and conv_transpose 1d/2d paths)
// ============================================================================

pub(crate) fn squeeze_3d_to_1d(tensor: FlexTensor) -> FlexTensor {
    let shape = tensor.layout().shape();
    tensor.reshape(Shape::from(alloc::vec![shape[0], shape[1], shape[4]]))
}

pub(crate) fn squeeze_3d_to_2d(tensor: FlexTensor) -> FlexTensor {
    let shape = tensor.layout().shape();
    tensor.reshape(Shape::from(alloc::vec![
        shape[0], shape[1], shape[3], shape[4]
    ]))
}

// ============================================================================
// bf16 conversion helpers
// ============================================================================

pub(crate) fn convert_bf16_to_f32(tensor: &FlexTensor) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let data: &[bf16] = tensor.storage();
    let f32_data: Vec<f32> = data.iter().map(|x| x.to_f32()).collect();
    FlexTensor::new(
        Bytes::from_elems(f32_data),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::F32,
    )
}

pub(crate) fn convert_f32_to_bf16(tensor: &FlexTensor) -> FlexTensor {
    let data: &[f32] = tensor.storage();
    let bf16_data: Vec<bf16> = data.iter().map(|x| bf16::from_f32(*x)).collect();
    FlexTensor::new(
        Bytes::from_elems(bf16_data),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::BF16,
    )
}

// ============================================================================
// Bias addition
// ============================================================================

/// pneumoscope patch 9: the bias gradient of a 2-D convolution, `db[c] = Σ_{n,h,w} dY[n, c, h, w]`, straight
/// from the contiguous output gradient: one task per channel, each plane summed in 16 independent lanes (which
/// vectorise) and the planes added in batch order, so the result does not depend on the thread count.
/// burn-backend's default swapped the batch and channel axes (a full copy of `dY`) and reduced the copy.
pub(crate) fn conv2d_bias_grad<T>(output_grad: FlexTensor, dtype: DType) -> FlexTensor
where
    T: burn_backend::Element + bytemuck::Pod + Default + core::ops::Add<Output = T> + Send + Sync,
{
    const LANES: usize = 16;
    let grad = output_grad.to_contiguous();
    let s = grad.layout().shape();
    let (batch, channels, plane) = (s[0], s[1], s[2] * s[3]);
    let data: &[T] = grad.storage();
    let channel_sum = |c: usize| {
        let mut total = T::default();
        for b in 0..batch {
            let src = &data[(b * channels + c) * plane..][..plane];
            let mut lanes = [T::default(); LANES];
            let chunks = src.chunks_exact(LANES);
            let tail = chunks.remainder();
            for chunk in chunks {
                for (l, &v) in lanes.iter_mut().zip(chunk) {
                    *l = *l + v;
                }
            }
            let mut sum = tail.iter().fold(T::default(), |a, &v| a + v);
            for l in lanes {
                sum = sum + l;
            }
            total = total + sum;
        }
        total
    };
    #[cfg(feature = "rayon")]
    let sums: Vec<T> = {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(channel_sum).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let sums: Vec<T> = (0..channels).map(channel_sum).collect();
    FlexTensor::new(Bytes::from_elems(sums), Layout::contiguous(Shape::from(vec![channels])), dtype)
}

/// Adds `bias[c]` to every position of channel `c`. pneumoscope patch 9: one task per plane, and `+` instead of
/// the `add_fn` pointer the callers pass (the same addition for every dtype here — half's `f16 + f16` also adds
/// in f32 — but called through a pointer per element it kept the loop from vectorising): with the serial loop
/// it cost 9 ms of the simple CNN's first layer (16 MiB of output at 128 px), more than the convolution itself.
pub(crate) fn add_bias<T: Copy + Send + Sync + core::ops::Add<Output = T>>(
    output: &mut [T],
    bias: &[T],
    batch: usize,
    channels: usize,
    spatial: usize,
    _add_fn: fn(T, T) -> T,
) {
    if spatial == 0 || channels == 0 {
        return;
    }
    let planes = &mut output[..batch * channels * spatial];
    let add = |(i, plane): (usize, &mut [T])| {
        let v = bias[i % channels];
        for o in plane {
            *o = *o + v;
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        planes.par_chunks_mut(spatial).enumerate().for_each(add);
    }
    #[cfg(not(feature = "rayon"))]
    planes.chunks_mut(spatial).enumerate().for_each(add);
}
