//! The fused training-mode BatchNorm (kernels/src/batch_norm/mod.rs) gives what burn's own `BatchNorm` gives: the same
//! output, the same gradients for the input, γ and β, and the same running statistics; and in inference the same
//! output from the running statistics.

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Tensor, TensorData, Tolerance};
use pneumoscope_kernels::batch_norm::batch_norm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type AD = Autodiff<Flex>;

fn random(rng: &mut ChaCha8Rng, shape: [usize; 4], offset: f32, spread: f32) -> Tensor<AD, 4> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| offset + spread * rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

/// A BatchNorm with random γ and β (burn initialises them to 1 and 0, which would hide a mix-up).
fn layer(rng: &mut ChaCha8Rng, c: usize) -> BatchNorm<AD> {
    let device = Default::default();
    let mut bn: BatchNorm<AD> = BatchNormConfig::new(c).init(&device);
    let g: Vec<f32> = (0..c).map(|_| rng.random_range(0.5f32..1.5)).collect();
    let b: Vec<f32> = (0..c).map(|_| rng.random_range(-0.5f32..0.5)).collect();
    bn.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(g, [c]), &device));
    bn.beta = Param::from_tensor(Tensor::from_data(TensorData::new(b, [c]), &device));
    bn
}

/// Per channel: Σ w·x̂ in f64 (x̂ from the f64 batch mean and biased variance, ε = 1e-5 as burn's default) and
/// Σ |w·x̂|, the scale of its rounding error.
fn exact_dgamma(x: &Tensor<AD, 4>, w: &Tensor<AD, 4>) -> Vec<(f64, f64)> {
    let [n, c, h, wd] = x.dims();
    let (xs, ws) = (x.to_data().to_vec::<f32>().unwrap(), w.to_data().to_vec::<f32>().unwrap());
    let plane = h * wd;
    (0..c)
        .map(|ch| {
            let at = |b: usize| (b * c + ch) * plane..(b * c + ch + 1) * plane;
            let vals: Vec<(f64, f64)> =
                (0..n).flat_map(|b| xs[at(b)].iter().zip(&ws[at(b)]).map(|(&x, &w)| (x as f64, w as f64))).collect();
            let m = vals.len() as f64;
            let mean = vals.iter().map(|v| v.0).sum::<f64>() / m;
            let var = vals.iter().map(|v| (v.0 - mean).powi(2)).sum::<f64>() / m;
            let inv = 1.0 / (var + 1e-5).sqrt();
            let terms = vals.iter().map(|&(x, w)| w * (x - mean) * inv);
            (terms.clone().sum(), terms.map(f64::abs).sum())
        })
        .collect()
}

#[test]
fn fused_batch_norm_matches_burns_forward_gradients_and_running_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // A large mean against the spread (offsets 3 and 100) checks the variance's centring (per plane, then
    // combined across planes); 5×7 is not a power of two; 37×41 planes have a tail after the 16-lane chunks.
    for (shape, offset) in [([4, 3, 5, 7], 0.0), ([2, 5, 8, 8], 3.0), ([1, 2, 3, 1], -1.0), ([3, 2, 37, 41], 100.0)] {
        let c = shape[1];
        let seed = rng.random::<u64>();
        let x = random(&mut rng, shape, offset, 1.0);
        let weights = random(&mut rng, shape, 0.0, 1.0); // the loss Σ w·y gives every output its own gradient

        let run = |fused: bool| {
            // Its own layer each time (clones share their running statistics), with the same γ and β.
            let bn = layer(&mut ChaCha8Rng::seed_from_u64(seed), c);
            let x = x.clone().detach().require_grad();
            let y = if fused { batch_norm(&bn, x.clone()) } else { bn.forward(x.clone()) };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let dx = x.grad(&grads).expect("input gradient").into_data();
            let dg = bn.gamma.val().grad(&grads).expect("gamma gradient").into_data();
            let db = bn.beta.val().grad(&grads).expect("beta gradient").into_data();
            let stats = (bn.running_mean.value_sync().into_data(), bn.running_var.value_sync().into_data());
            (y.into_data(), dx, dg, db, stats)
        };
        let (y, dx, dg, db, (rm, rv)) = run(true);
        let (y_ref, dx_ref, dg_ref, db_ref, (rm_ref, rv_ref)) = run(false);
        // dγ = Σ w·x̂ in f64: ours within f32 rounding of it, and no further from it than burn's.
        let exact = exact_dgamma(&x, &weights);
        let (ours, burns) = (dg.to_vec::<f32>().unwrap(), dg_ref.to_vec::<f32>().unwrap());
        for ch in 0..c {
            let (e, o, b) = (exact[ch].0, ours[ch] as f64, burns[ch] as f64);
            let bound = 1e-5 * exact[ch].1 + 1e-6;
            assert!((o - e).abs() <= bound.max((b - e).abs()), "{shape:?} channel {ch}: ours {o}, burn {b}, f64 {e}");
        }
        let tol = Tolerance::<f32>::absolute(2e-4);
        y.assert_approx_eq::<f32>(&y_ref, tol);
        dx.assert_approx_eq::<f32>(&dx_ref, tol);
        if offset.abs() < 10.0 {
            dg.assert_approx_eq::<f32>(&dg_ref, tol); // at offset 100 burn's own f32 mean is off by more
        }
        db.assert_approx_eq::<f32>(&db_ref, tol);
        rm.assert_approx_eq::<f32>(&rm_ref, Tolerance::absolute(1e-5));
        rv.assert_approx_eq::<f32>(&rv_ref, Tolerance::absolute(1e-5));
        // Not trivially equal: the layer normalised, and the statistics moved off their initial 0 and 1.
        assert!(dx.to_vec::<f32>().unwrap().iter().any(|v| v.abs() > 1e-3), "{shape:?}");
        assert!(rm.to_vec::<f32>().unwrap().iter().any(|v| v.abs() > 1e-3), "{shape:?}");
    }
}

#[test]
fn frozen_gamma_and_beta_still_give_the_input_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let bn = layer(&mut rng, 4);
    let bn = BatchNorm { gamma: bn.gamma.set_require_grad(false), beta: bn.beta.set_require_grad(false), ..bn };
    let x = random(&mut rng, [3, 4, 6, 6], 0.5, 1.0).require_grad();
    let w = random(&mut rng, [3, 4, 6, 6], 0.0, 1.0);
    let g1 = (batch_norm(&bn, x.clone()) * w.clone()).sum().backward();
    let g2 = (bn.forward(x.clone()) * w).sum().backward();
    let (a, b) = (x.grad(&g1).unwrap().into_data(), x.grad(&g2).unwrap().into_data());
    a.assert_approx_eq::<f32>(&b, Tolerance::absolute(2e-4));
    assert!(bn.gamma.val().grad(&g1).is_none());
}

#[test]
fn inference_matches_burns_batch_norm_with_running_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let bn = layer(&mut rng, 3);
    let x = random(&mut rng, [2, 3, 4, 4], 1.0, 2.0);
    let _ = batch_norm(&bn, x.clone()); // one training step moves the running statistics
    use burn::module::AutodiffModule;
    let (bn, x) = (bn.valid(), x.inner());
    let (ours, burns) = (batch_norm(&bn, x.clone()).into_data(), bn.forward(x.clone()).into_data());
    ours.assert_approx_eq::<f32>(&burns, Tolerance::absolute(1e-5));
    // Running statistics, not the batch's: the output differs from the training-mode output of the same batch.
    let x_ad = Tensor::<AD, 4>::from_inner(x);
    let fresh = layer(&mut ChaCha8Rng::seed_from_u64(3), 3); // same γ, β as `bn`, statistics not yet moved
    let batch_stats = batch_norm(&fresh, x_ad).into_data();
    let (a, b) = (ours.to_vec::<f32>().unwrap(), batch_stats.to_vec::<f32>().unwrap());
    let gap = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(gap > 0.1, "inference gave the batch-statistics output (largest difference {gap})");
}
