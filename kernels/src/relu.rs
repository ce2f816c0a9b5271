//! ReLU as a backend extension: [`ReluKernel`] has the activation and its backward pass, with the backend's own
//! `ActivationOps` as defaults; `Flex` runs contiguous f32 tensors in one parallel pass (in place where the
//! storage is not shared), where burn-flex's run on one thread — on 2 cores the other core sat idle for ~5 % of a
//! regularized CNN training step at 224 px; `Autodiff` records one operation that keeps the output, as burn's does.
//! Same values as burn-flex: `max(x, 0)` forward, the gradient where the output is positive, zero elsewhere.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ActivationOps, FloatTensor};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use burn_std::Bytes;
use rayon::prelude::*;

/// Elements per parallel task: small tensors (the classifier heads) stay on one thread.
const CHUNK: usize = 1 << 15;

/// A backend that runs ReLU through these methods (defaults: its own `ActivationOps`).
pub trait ReluKernel: Backend {
    /// `max(x, 0)`.
    fn relu_kernel(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::relu(x)
    }

    /// The input gradient from the output `y` and the output gradient `dy`: `dy` where `y > 0`, else 0.
    fn relu_kernel_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::relu_backward(y, dy)
    }
}

/// The f32 elements of a contiguous tensor starting at offset 0, or `None`.
fn f32_elements(t: &FlexTensor) -> Option<usize> {
    let l = t.layout();
    (t.dtype() == DType::F32 && l.is_contiguous() && l.start_offset() == 0).then(|| l.num_elements())
}

impl ReluKernel for Flex {
    fn relu_kernel(mut x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(n) = f32_elements(&x) else { return <Self as ActivationOps<Self>>::relu(x) };
        if x.is_unique() {
            x.storage_mut::<f32>()[..n].par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
            return x;
        }
        let y: Vec<f32> = x.storage::<f32>()[..n].par_iter().with_min_len(CHUNK).map(|v| v.max(0.0)).collect();
        FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(x.layout().shape().clone()), DType::F32)
    }

    fn relu_kernel_backward(y: FloatTensor<Self>, mut dy: FloatTensor<Self>) -> FloatTensor<Self> {
        let (Some(n), Some(m)) = (f32_elements(&y), f32_elements(&dy)) else {
            return <Self as ActivationOps<Self>>::relu_backward(y, dy);
        };
        if n != m || y.layout().shape() != dy.layout().shape() {
            return <Self as ActivationOps<Self>>::relu_backward(y, dy);
        }
        let mask = |out: f32, g: f32| if out > 0.0 { g } else { 0.0 };
        let ys = &y.storage::<f32>()[..n];
        if dy.is_unique() {
            dy.storage_mut::<f32>()[..n].par_chunks_mut(CHUNK).zip(ys.par_chunks(CHUNK)).for_each(|(g, y)| {
                g.iter_mut().zip(y).for_each(|(g, &y)| *g = mask(y, *g));
            });
            return dy;
        }
        let dx: Vec<f32> =
            ys.par_iter().zip(&dy.storage::<f32>()[..n]).with_min_len(CHUNK).map(|(&y, &g)| mask(y, g)).collect();
        FlexTensor::new(Bytes::from_elems(dx), Layout::contiguous(y.layout().shape().clone()), DType::F32)
    }
}

#[cfg(feature = "cuda")]
impl ReluKernel for burn::backend::Cuda {}

#[derive(Debug)]
struct ReluBackward;

impl<B: ReluKernel> Backward<B, 1> for ReluBackward {
    /// The output.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::relu_kernel_backward(ops.state, dy));
        }
    }
}

impl<B: ReluKernel, C: CheckpointStrategy> ReluKernel for Autodiff<B, C> {
    fn relu_kernel(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ReluBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::relu_kernel(x.primitive);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::relu_kernel(x.primitive)),
        }
    }
}

/// `max(x, 0)` through [`ReluKernel`]: what burn's `Relu::forward` computes.
pub fn relu<B: ReluKernel, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::relu_kernel(x.into_primitive().tensor())))
}
