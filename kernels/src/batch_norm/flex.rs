//! Training-mode BatchNorm kernels for the CPU backend (burn-flex, f32): the forward pass and the closed-form
//! backward pass of `batch_norm.rs`, each in two passes over the activations with one task per channel (the
//! statistics) or per plane (the outputs), instead of the six or seven broadcast tensor operations of the generic
//! version, each a single-threaded pass of its own. The forward pass writes only y; the backward pass recomputes
//! x̂ = (x − mean)·(1/σ) from the input, as the forward pass computed it. Sums over a plane run in 16 f32 lanes
//! (which vectorise) and planes are added in batch order in f64, so results do not depend on the thread count.

use burn::tensor::DType;
use burn::tensor::{Bytes, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;
use wide::f32x4;

const LANES: usize = 16;

/// 16 partial sums in four 4-lane vectors: the compiler keeps them in registers and the loops below run on
/// whole vectors (written as plain arrays, the products of these sums stayed scalar).
type Lanes = [f32x4; 4];

#[inline(always)]
fn quarter(chunk: &[f32; LANES], j: usize) -> f32x4 {
    f32x4::new([chunk[4 * j], chunk[4 * j + 1], chunk[4 * j + 2], chunk[4 * j + 3]])
}

#[inline(always)]
fn total(lanes: Lanes) -> f32 {
    lanes.iter().map(|l| l.to_array().iter().sum::<f32>()).sum()
}

#[inline(always)]
fn chunks(a: &[f32]) -> (impl Iterator<Item = &[f32; LANES]>, &[f32]) {
    let chunks = a.chunks_exact(LANES);
    let tail = chunks.remainder();
    (chunks.map(|c| c.try_into().expect("chunks_exact gives LANES values")), tail)
}

/// Σ a[i] in `LANES` partial sums.
#[inline(always)]
fn lane_sum(a: &[f32]) -> f32 {
    let mut s: Lanes = [f32x4::ZERO; 4];
    let (body, tail) = chunks(a);
    for c in body {
        for (j, s) in s.iter_mut().enumerate() {
            *s += quarter(c, j);
        }
    }
    total(s) + tail.iter().sum::<f32>()
}

/// (Σ (a[i] − c), Σ (a[i] − c)²) in one pass, `LANES` partial sums each.
#[inline(always)]
fn lane_moments(a: &[f32], c: f32) -> (f32, f32) {
    let (mut s1, mut s2): (Lanes, Lanes) = ([f32x4::ZERO; 4], [f32x4::ZERO; 4]);
    let (body, tail) = chunks(a);
    let cv = f32x4::splat(c);
    for chunk in body {
        for j in 0..4 {
            let d = quarter(chunk, j) - cv;
            s1[j] += d;
            s2[j] += d * d;
        }
    }
    let (t1, t2) = tail.iter().fold((0f32, 0f32), |(t1, t2), &v| (t1 + (v - c), t2 + (v - c) * (v - c)));
    (total(s1) + t1, total(s2) + t2)
}

/// (Σ d[i], Σ d[i]·x̂[i]) with x̂ = (x − mu)·is, in one pass over two planes of the same length.
#[inline(always)]
fn lane_sums2(d: &[f32], x: &[f32], mu: f32, is: f32) -> (f32, f32) {
    let (mut s, mut sx): (Lanes, Lanes) = ([f32x4::ZERO; 4], [f32x4::ZERO; 4]);
    let ((dc, dt), (xc, xt)) = (chunks(d), chunks(x));
    let (muv, isv) = (f32x4::splat(mu), f32x4::splat(is));
    for (dc, xc) in dc.zip(xc) {
        for j in 0..4 {
            let d = quarter(dc, j);
            s[j] += d;
            sx[j] += d * ((quarter(xc, j) - muv) * isv);
        }
    }
    let (ts, tsx) = dt.iter().zip(xt).fold((0f32, 0f32), |(ts, tsx), (&d, &x)| (ts + d, tsx + d * ((x - mu) * is)));
    (total(s) + ts, total(sx) + tsx)
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), DType::F32)
}

fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    let s = t.layout().shape();
    (s.len() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

/// Σ x and Σ (x − μ)² over one channel's planes (`planes` of `len` values each), for the μ those planes give.
/// Each plane is read twice while it is in the core's cache: its sum gives a centre c (the plane's mean in f32),
/// then Σ (x − c) and Σ (x − c)² about it; planes combine in f64 by Σ (x − μ)² = S₂ + 2(c − μ)·S₁ + len·(c − μ)²,
/// so deviations are taken from a centre near the data, without cancellation when the mean is large against the
/// spread, and the channel's activations come from memory once.
fn channel_stats<'a>(planes: impl Iterator<Item = &'a [f32]> + Clone, len: usize, m: f64) -> (f64, f64) {
    let per_plane: Vec<(f64, f32, f64, f64)> = planes
        .map(|p| {
            let sum = lane_sum(p) as f64;
            let c = (sum / len as f64) as f32;
            let (s1, s2) = lane_moments(p, c);
            (sum, c, s1 as f64, s2 as f64)
        })
        .collect();
    let mean = per_plane.iter().map(|p| p.0).sum::<f64>() / m;
    let sq = per_plane
        .iter()
        .map(|&(_, c, s1, s2)| {
            let shift = c as f64 - mean;
            s2 + 2.0 * shift * s1 + len as f64 * shift * shift
        })
        .sum::<f64>();
    (mean, (sq / m).max(0.0))
}

/// y (N×C×H×W), then 1/σ, the batch mean and the biased variance (C each); `None` for other dtypes or ranks.
pub(crate) fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64) -> Option<[FlexTensor; 4]> {
    if [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
        return None;
    }
    let [n, c, h, w] = dims4(x)?;
    let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
    let (xs, gs, bs): (&[f32], &[f32], &[f32]) = (x.storage(), gamma.storage(), beta.storage());
    let plane = h * w;
    let m = (n * plane) as f64;
    let stats: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| channel_stats((0..n).map(|b| &xs[(b * c + ch) * plane..][..plane]), plane, m))
        .collect();
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let inv_std: Vec<f32> = stats.iter().map(|s| (1.0 / (s.1 + epsilon).sqrt()) as f32).collect();
    let mut y = Vec::with_capacity(xs.len());
    if plane > 0 {
        y.spare_capacity_mut()[..xs.len()].par_chunks_mut(plane).enumerate().for_each(|(i, yo)| {
            let ch = i % c;
            let (mu, is, g, b) = (mean[ch], inv_std[ch], gs[ch], bs[ch]);
            for (yo, &v) in yo.iter_mut().zip(&xs[i * plane..][..plane]) {
                yo.write((v - mu) * is * g + b);
            }
        });
    }
    // SAFETY: the planes above cover all xs.len() elements (n·c planes of `plane` values, or none when a plane is
    // empty and the length is 0), each written once.
    unsafe { y.set_len(xs.len()) };
    Some([tensor(y, vec![n, c, h, w]), tensor(inv_std, vec![c]), tensor(mean, vec![c]), tensor(var, vec![c])])
}

/// dx (N×C×H×W), dγ, dβ (C each) from the output gradient, the input and the statistics the forward pass used:
/// with x̂ = (x − mean)·(1/σ), dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/σ · (dy − dβ/M − x̂·dγ/M). `None` for other dtypes
/// or ranks.
pub(crate) fn backward(
    dy: &FlexTensor,
    x: &FlexTensor,
    mean: &FlexTensor,
    inv_std: &FlexTensor,
    gamma: &FlexTensor,
) -> Option<[FlexTensor; 3]> {
    if [dy.dtype(), x.dtype(), mean.dtype(), inv_std.dtype(), gamma.dtype()] != [DType::F32; 5] {
        return None;
    }
    let [n, c, h, w] = dims4(x)?;
    if dims4(dy)? != [n, c, h, w] {
        return None;
    }
    let (dy, x, mean, inv_std, gamma) =
        (dy.to_contiguous(), x.to_contiguous(), mean.to_contiguous(), inv_std.to_contiguous(), gamma.to_contiguous());
    let [ds, xs, mus, is, gs]: [&[f32]; 5] =
        [dy.storage(), x.storage(), mean.storage(), inv_std.storage(), gamma.storage()];
    let plane = h * w;
    let m = (n * plane) as f64;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mu, is) = (mus[ch], is[ch]);
            (0..n).fold((0f64, 0f64), |(db, dg), b| {
                let at = (b * c + ch) * plane;
                let (s, sx) = lane_sums2(&ds[at..][..plane], &xs[at..][..plane], mu, is);
                (db + s as f64, dg + sx as f64)
            })
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let mut dx = Vec::with_capacity(ds.len());
    if plane > 0 {
        dx.spare_capacity_mut()[..ds.len()].par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
            let ch = i % c;
            let (mu, is) = (mus[ch], is[ch]);
            let scale = gs[ch] * is;
            let (mean_db, mean_dg) = ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32);
            let (d, x) = (&ds[i * plane..][..plane], &xs[i * plane..][..plane]);
            for ((o, &d), &x) in out.iter_mut().zip(d).zip(x) {
                o.write((d - (x - mu) * is * mean_dg - mean_db) * scale);
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
