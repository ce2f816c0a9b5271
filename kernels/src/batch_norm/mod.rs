//! BatchNorm in training mode as one autodiff operation with its own backward pass, as PyTorch's is.
//!
//! burn's `BatchNorm::forward` builds training-mode normalisation out of seven elementary tensor operations;
//! autodiff then keeps three full-size intermediates per layer for the backward pass (x − mean twice, and the
//! quotient before the scale) and runs each elementary backward separately. Here the forward pass keeps its
//! input x (no new tensor: x̂ = (x − mean)·(1/σ) is recomputed from it and the per-channel statistics) and the
//! backward pass is the closed form
//!
//! ```text
//! dβ = Σ dy        dγ = Σ dy·x̂        dx = γ/σ · (dy − dβ/M − x̂·dγ/M)      (sums over N, H, W; M = N·H·W)
//! ```
//!
//! Inference (no autodiff) uses the running statistics as burn's `BatchNorm` does, folded into one per-channel
//! scale and shift. The running statistics are updated exactly as burn updates them (momentum, biased batch
//! variance), so checkpoints and imported weights mean the same thing.
//!
//! The computations are methods of [`FusedBatchNorm`] with defaults in plain tensor operations (any backend);
//! the CPU backend runs them as kernels of its own (flex.rs: a few parallel passes instead of six or
//! seven single-threaded broadcast operations).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::nn::BatchNorm;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

mod flex;

/// A backend that can run training-mode BatchNorm. Every backend can, through the default methods (plain
/// tensor operations); the CPU backend overrides the forward and backward computations with its own kernels
/// (flex.rs), and the autodiff backend overrides `batch_norm_train` to record one operation whose
/// backward pass is `batch_norm_backward`.
pub trait FusedBatchNorm: Backend {
    /// Training-mode BatchNorm of an N×C×H×W tensor with per-channel `gamma` and `beta` (shape C): the output,
    /// and the batch mean and biased variance (shape C, not tracked by autodiff) for the running statistics.
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [y, _, mean, var] = Self::batch_norm_forward(x, gamma, beta, epsilon);
        (y, mean, var)
    }

    /// The forward computation: y (N×C×H×W), then 1/σ, the batch mean and the biased variance (C each).
    fn batch_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> [FloatTensor<Self>; 4] {
        generic_forward::<Self>(x, gamma, beta, epsilon)
    }

    /// The closed-form backward computation: dx (N×C×H×W), dγ and dβ (C each) from the output gradient dy, the
    /// input x, the batch mean and 1/σ the forward pass used, and γ.
    fn batch_norm_backward(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        inv_std: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        generic_backward::<Self>(dy, x, mean, inv_std, gamma)
    }

    /// Inference: x·a + b with per-channel `a` and `b` (shape C).
    fn batch_norm_affine(x: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_affine::<Self>(x, a, b)
    }
}

/// `batch_norm_forward` in plain tensor operations (any backend).
fn generic_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> [FloatTensor<B>; 4] {
    let p = forward_parts::<B>(float(x), float(gamma), float(beta), epsilon);
    [prim(p.y), prim(p.inv_std), prim(p.mean), prim(p.var)]
}

/// `batch_norm_affine` in plain tensor operations (any backend).
fn generic_affine<B: Backend>(x: FloatTensor<B>, a: FloatTensor<B>, b: FloatTensor<B>) -> FloatTensor<B> {
    prim(float::<B, 4>(x) * per_channel(float(a)) + per_channel(float(b)))
}

/// `batch_norm_backward` in plain tensor operations (any backend).
fn generic_backward<B: Backend>(
    dy: FloatTensor<B>,
    x: FloatTensor<B>,
    mean: FloatTensor<B>,
    inv_std: FloatTensor<B>,
    gamma: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let (dy, x, inv_std): (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 1>) = (float(dy), float(x), float(inv_std));
    let x_hat = (x - per_channel(float(mean))) * per_channel(inv_std.clone());
    let [n, _, h, w] = x_hat.dims();
    let m = (n * h * w) as f64;
    let dbeta = channel_sums(dy.clone());
    let dgamma = channel_sums(dy.clone() * x_hat.clone());
    let scale = per_channel(float::<B, 1>(gamma) * inv_std);
    let dx =
        (dy - x_hat * per_channel(dgamma.clone().div_scalar(m)) - per_channel(dbeta.clone().div_scalar(m))) * scale;
    [prim(dx), prim(dgamma), prim(dbeta)]
}

impl FusedBatchNorm for burn::backend::Flex {
    fn batch_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> [FloatTensor<Self>; 4] {
        match flex::forward(&x, &gamma, &beta, epsilon) {
            Some(out) => out,
            None => generic_forward::<Self>(x, gamma, beta, epsilon),
        }
    }

    fn batch_norm_backward(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        inv_std: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        match flex::backward(&dy, &x, &mean, &inv_std, &gamma) {
            Some(out) => out,
            None => generic_backward::<Self>(dy, x, mean, inv_std, gamma),
        }
    }

    fn batch_norm_affine(x: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        match flex::affine(&x, &a, &b) {
            Some(y) => y,
            None => generic_affine::<Self>(x, a, b),
        }
    }
}

#[cfg(feature = "cuda")]
impl FusedBatchNorm for burn::backend::Cuda {}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// What the forward pass computes: the output, 1/σ, and the batch statistics.
struct Parts<B: Backend> {
    y: Tensor<B, 4>,
    inv_std: Tensor<B, 1>,
    mean: Tensor<B, 1>,
    var: Tensor<B, 1>,
}

/// Sum over N, H and W of an N×C×H×W tensor: C values. The spatial sum runs over contiguous rows first.
fn channel_sums<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = t.dims();
    t.reshape([n, c, h * w]).sum_dim(2).sum_dim(0).reshape([c])
}

fn per_channel<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 4> {
    let [c] = t.dims();
    t.reshape([1, c, 1, 1])
}

fn forward_parts<B: Backend>(x: Tensor<B, 4>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>, epsilon: f64) -> Parts<B> {
    let [n, _, h, w] = x.dims();
    let m = (n * h * w) as f64;
    // Two passes (mean, then the mean of squared deviations), as burn and PyTorch: no cancellation when the
    // mean is large against the spread.
    let mean = channel_sums(x.clone()).div_scalar(m);
    let centered = x - per_channel(mean.clone());
    let var = channel_sums(centered.clone().square()).div_scalar(m);
    let inv_std = var.clone().add_scalar(epsilon).sqrt().recip();
    let x_hat = centered * per_channel(inv_std.clone());
    let y = x_hat * per_channel(gamma) + per_channel(beta);
    Parts { y, inv_std, mean, var }
}

#[derive(Debug)]
struct BatchNormBackward;

impl<B: FusedBatchNorm> Backward<B, 3> for BatchNormBackward {
    /// The input x (N×C×H×W), the batch mean, 1/σ and γ (C each).
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, mean, inv_std, gamma) = ops.state;
        let [dx, dgamma, dbeta] = B::batch_norm_backward(dy, x, mean, inv_std, gamma);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: FusedBatchNorm, C: CheckpointStrategy> FusedBatchNorm for Autodiff<B, C> {
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        let (x_inner, gamma_inner) = (x.primitive.clone(), gamma.primitive.clone());
        let [y, inv_std, mean, var] = B::batch_norm_forward(x.primitive, gamma.primitive, beta.primitive, epsilon);
        let y = match BatchNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x_inner, mean.clone(), inv_std, gamma_inner), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }
}

/// `bn` applied to an N×C×H×W tensor: training mode (batch statistics, running statistics updated) on an
/// autodiff backend, inference mode (running statistics) otherwise — the same rule as burn's `BatchNorm`.
pub fn batch_norm<B: FusedBatchNorm>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let device = x.device();
    if !B::ad_enabled(&device) {
        return batch_norm_inference(bn, x);
    }
    let (y, mean, var) = B::batch_norm_train(prim(x), prim(bn.gamma.val()), prim(bn.beta.val()), bn.epsilon);
    // running ← (1 − momentum)·running + momentum·batch, as burn's BatchNorm (the batch statistics are untracked).
    for (running, batch) in [(&bn.running_mean, mean), (&bn.running_var, var)] {
        let old = running.value_sync().to_device(&device);
        running.update(old.mul_scalar(1.0 - bn.momentum).add(float::<B, 1>(batch).mul_scalar(bn.momentum)).detach());
    }
    float(y)
}

/// Inference: the running statistics fold into one per-channel affine map, y = x·a + b with a = γ/√(var + ε)
/// and b = β − mean·a, computed on C values; two passes over the activations instead of burn's four
/// (subtract, divide, scale, shift). Equal to burn's `BatchNorm::forward` up to rounding.
fn batch_norm_inference<B: FusedBatchNorm>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let device = x.device();
    let mean = bn.running_mean.value().to_device(&device);
    let var = bn.running_var.value().to_device(&device);
    let a = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
    let b = bn.beta.val() - mean * a.clone();
    float(B::batch_norm_affine(prim(x), prim(a), prim(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{TensorData, Tolerance};

    fn tensor<const D: usize>(shape: [usize; D], f: impl Fn(usize) -> f32) -> Tensor<Flex, D> {
        let v: Vec<f32> = (0..shape.iter().product()).map(f).collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    /// The plain-tensor version (other backends, CUDA) computes what the CPU kernels compute (the rank given to
    /// `float` only labels the primitive; `into_data` keeps its own shape).
    #[test]
    fn generic_forward_and_backward_match_the_cpu_kernels() {
        let shape = [3, 4, 9, 7];
        let x = tensor(shape, |i| 2.0 + ((i * 37 % 101) as f32 / 50.0 - 1.0));
        let dy = tensor(shape, |i| (i * 53 % 97) as f32 / 48.0 - 1.0);
        let gamma = tensor([4], |i| 0.5 + i as f32 * 0.3);
        let beta = tensor([4], |i| i as f32 * 0.2 - 0.3);
        let forward = |generic: bool| {
            let (x, g, b) = (prim(x.clone()), prim(gamma.clone()), prim(beta.clone()));
            let out = if generic {
                generic_forward::<Flex>(x, g, b, 1e-5)
            } else {
                <Flex as FusedBatchNorm>::batch_norm_forward(x, g, b, 1e-5)
            };
            out.map(|t| float::<Flex, 1>(t).into_data())
        };
        let backward = |generic: bool| {
            let [_, inv_std, mean, _] = <Flex as FusedBatchNorm>::batch_norm_forward(
                prim(x.clone()),
                prim(gamma.clone()),
                prim(beta.clone()),
                1e-5,
            );
            let args = (prim(dy.clone()), prim(x.clone()), mean, inv_std, prim(gamma.clone()));
            let out = if generic {
                generic_backward::<Flex>(args.0, args.1, args.2, args.3, args.4)
            } else {
                <Flex as FusedBatchNorm>::batch_norm_backward(args.0, args.1, args.2, args.3, args.4)
            };
            out.map(|t| float::<Flex, 1>(t).into_data())
        };
        let tol = Tolerance::<f32>::absolute(1e-4);
        for (a, b) in forward(true).iter().zip(forward(false).iter()) {
            a.assert_approx_eq::<f32>(b, tol);
        }
        for (a, b) in backward(true).iter().zip(backward(false).iter()) {
            a.assert_approx_eq::<f32>(b, tol);
        }
        let dgamma = backward(false)[1].to_vec::<f32>().unwrap();
        assert!(dgamma.iter().any(|v| v.abs() > 1e-2), "{dgamma:?}");
    }
}
