//! The bias gradient of a 2-D convolution, `db[c] = Σ_{n,h,w} dY[n, c, h, w]`, straight from the contiguous
//! output gradient: one task per channel, each plane summed in 16 independent lanes (which vectorise) and the
//! planes added in batch order, so the result does not depend on the thread count. burn-backend's default swaps
//! the batch and channel axes first (a full copy of `dY`) and reduces the copy.

use burn_backend::DType;
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};

pub fn conv2d_bias_grad<T>(output_grad: FlexTensor, dtype: DType) -> FlexTensor
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
