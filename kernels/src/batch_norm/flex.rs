//! Training-mode BatchNorm kernels for the CPU backend (burn-flex, f32): the forward pass and the closed-form
//! backward pass of `batch_norm.rs`, each in a few passes over the activations with one task per channel (the
//! statistics) or per plane (the outputs), instead of the six or seven broadcast tensor operations of the generic
//! version, each a single-threaded pass of its own. Same formulas; sums over a plane run in 16 f32 lanes and
//! planes are added in batch order in f64, so results do not depend on the thread count.

use burn::tensor::DType;
use burn::tensor::{Bytes, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

const LANES: usize = 16;

/// Σ f(i) over a plane of `len` values, in `LANES` independent partial sums (which vectorise).
#[inline(always)]
fn lane_sum(len: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let whole = len / LANES * LANES;
    for base in (0..whole).step_by(LANES) {
        for (k, l) in lanes.iter_mut().enumerate() {
            *l += f(base + k);
        }
    }
    let tail: f32 = (whole..len).map(&f).sum();
    lanes.iter().sum::<f32>() + tail
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), DType::F32)
}

fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    let s = t.layout().shape();
    (s.len() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

/// y, x̂ (N×C×H×W), 1/σ, batch mean and biased variance (C each); `None` for other dtypes or ranks.
pub(crate) fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64) -> Option<[FlexTensor; 5]> {
    if [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
        return None;
    }
    let [n, c, h, w] = dims4(x)?;
    let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
    let (xs, gs, bs): (&[f32], &[f32], &[f32]) = (x.storage(), gamma.storage(), beta.storage());
    let plane = h * w;
    let m = (n * plane) as f64;
    let planes_of = |ch: usize| (0..n).map(move |b| &xs[(b * c + ch) * plane..][..plane]);
    // Two passes per channel (mean, then mean squared deviation), as the generic version.
    let stats: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = planes_of(ch).map(|p| lane_sum(plane, |i| p[i]) as f64).sum::<f64>() / m;
            let mu = mean as f32;
            let var = planes_of(ch)
                .map(|p| {
                    lane_sum(plane, |i| {
                        let d = p[i] - mu;
                        d * d
                    }) as f64
                })
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .collect();
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let inv_std: Vec<f32> = stats.iter().map(|s| (1.0 / (s.1 + epsilon).sqrt()) as f32).collect();
    let (mut x_hat, mut y) = (Vec::with_capacity(xs.len()), Vec::with_capacity(xs.len()));
    if plane > 0 {
        let (xh_out, y_out) = (&mut x_hat.spare_capacity_mut()[..xs.len()], &mut y.spare_capacity_mut()[..xs.len()]);
        xh_out.par_chunks_mut(plane).zip(y_out.par_chunks_mut(plane)).enumerate().for_each(|(i, (xh, yo))| {
            let ch = i % c;
            let (mu, is, g, b) = (mean[ch], inv_std[ch], gs[ch], bs[ch]);
            for ((xh, yo), &v) in xh.iter_mut().zip(yo.iter_mut()).zip(&xs[i * plane..][..plane]) {
                let t = (v - mu) * is;
                xh.write(t);
                yo.write(t * g + b);
            }
        });
    }
    // SAFETY: the planes above cover all xs.len() elements of both buffers (n·c planes of `plane` values, or
    // none when a plane is empty and the length is 0), each written once.
    unsafe {
        x_hat.set_len(xs.len());
        y.set_len(xs.len());
    }
    let shape = vec![n, c, h, w];
    Some([
        tensor(y, shape.clone()),
        tensor(x_hat, shape),
        tensor(inv_std, vec![c]),
        tensor(mean, vec![c]),
        tensor(var, vec![c]),
    ])
}

/// dx (N×C×H×W), dγ, dβ (C each) from the output gradient and what the forward pass kept:
/// dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/σ · (dy − dβ/M − x̂·dγ/M). `None` for other dtypes or ranks.
pub(crate) fn backward(
    dy: &FlexTensor,
    x_hat: &FlexTensor,
    inv_std: &FlexTensor,
    gamma: &FlexTensor,
) -> Option<[FlexTensor; 3]> {
    if [dy.dtype(), x_hat.dtype(), inv_std.dtype(), gamma.dtype()] != [DType::F32; 4] {
        return None;
    }
    let [n, c, h, w] = dims4(x_hat)?;
    if dims4(dy)? != [n, c, h, w] {
        return None;
    }
    let (dy, x_hat, inv_std, gamma) =
        (dy.to_contiguous(), x_hat.to_contiguous(), inv_std.to_contiguous(), gamma.to_contiguous());
    let (ds, xs, is, gs): (&[f32], &[f32], &[f32], &[f32]) =
        (dy.storage(), x_hat.storage(), inv_std.storage(), gamma.storage());
    let plane = h * w;
    let m = (n * plane) as f64;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n).fold((0f64, 0f64), |(db, dg), b| {
                let at = (b * c + ch) * plane;
                let (d, x) = (&ds[at..][..plane], &xs[at..][..plane]);
                (db + lane_sum(plane, |i| d[i]) as f64, dg + lane_sum(plane, |i| d[i] * x[i]) as f64)
            })
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let mut dx = Vec::with_capacity(ds.len());
    if plane > 0 {
        dx.spare_capacity_mut()[..ds.len()].par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
            let ch = i % c;
            let scale = gs[ch] * is[ch];
            let (mean_db, mean_dg) = ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32);
            let (d, x) = (&ds[i * plane..][..plane], &xs[i * plane..][..plane]);
            for ((o, &d), &x) in out.iter_mut().zip(d).zip(x) {
                o.write((d - x * mean_dg - mean_db) * scale);
            }
        });
    }
    // SAFETY: as in `forward`, the planes cover all ds.len() elements, each written once.
    unsafe { dx.set_len(ds.len()) };
    Some([tensor(dx, vec![n, c, h, w]), tensor(dgamma, vec![c]), tensor(dbeta, vec![c])])
}

/// Inference: y = x·a[c] + b[c] per channel (the running statistics folded into a scale and shift), one pass,
/// one task per plane. `None` for other dtypes or ranks.
pub(crate) fn affine(x: &FlexTensor, a: &FlexTensor, b: &FlexTensor) -> Option<FlexTensor> {
    if [x.dtype(), a.dtype(), b.dtype()] != [DType::F32; 3] {
        return None;
    }
    let [n, c, h, w] = dims4(x)?;
    let (x, a, b) = (x.to_contiguous(), a.to_contiguous(), b.to_contiguous());
    let (xs, av, bv): (&[f32], &[f32], &[f32]) = (x.storage(), a.storage(), b.storage());
    if av.len() != c || bv.len() != c {
        return None;
    }
    let plane = h * w;
    let mut y = Vec::with_capacity(xs.len());
    if plane > 0 {
        y.spare_capacity_mut()[..xs.len()].par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
            let (scale, shift) = (av[i % c], bv[i % c]);
            for (o, &v) in out.iter_mut().zip(&xs[i * plane..][..plane]) {
                o.write(v * scale + shift);
            }
        });
    }
    // SAFETY: as in `forward`, the planes cover all xs.len() elements, each written once.
    unsafe { y.set_len(xs.len()) };
    Some(tensor(y, vec![n, c, h, w]))
}
