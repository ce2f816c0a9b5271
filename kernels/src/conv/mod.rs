//! 2-D convolution as a backend extension: [`Conv2dKernel`] has the forward pass and the three gradients as
//! methods whose defaults are the backend's own (`ModuleOps`); the CPU backend (`Flex`) overrides them with the
//! kernels of this module, and the autodiff backend records one operation whose backward pass calls them.
//!
//! Which kernel takes a convolution on the CPU (f32 unless said):
//! - 3×3, stride 1, ungrouped, on a batch: Winograd F(2×2, 3×3) ([`winograd`]), forward and both gradients;
//! - stride 1 with at most a few input channels (the first layer): a register-blocked direct convolution
//!   ([`small`]), forward and weight gradient;
//! - other ungrouped convolutions (f32, f64): whole-image im2col and one GEMM per chunk of the batch ([`im2col`]),
//!   forward and both gradients; on AMX tiles the stride-1 ones (the first layer's batch included) as an implicit
//!   GEMM whose tiles are filled straight from the input, the input gradient as a forward convolution
//!   (`implicit`);
//! - the bias gradient: per-channel sums straight from the output gradient ([`bias`]);
//! - anything else (grouped, stride-1 unpadded 1×1, f16): burn-flex's own.

pub mod bias;
pub mod im2col;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod implicit;
mod lanes;
pub mod small;
pub mod winograd;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::Flex;
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::{DType, Tensor, TensorPrimitive};

use im2col::dims4;

/// A backend that runs 2-D convolutions through these methods. Every backend can (the defaults are its own
/// `ModuleOps`); `Flex` overrides them with this crate's kernels, `Autodiff` records one operation per call.
pub trait Conv2dKernel: Backend {
    /// `conv2d` of `x` `[N, C_in, H, W]` with `weight` `[C_out, C_in / groups, KH, KW]` and an optional bias.
    fn conv2d_kernel(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d(x, weight, bias, options)
    }

    /// The input gradient of [`Self::conv2d_kernel`] given the output gradient.
    fn conv2d_kernel_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The weight gradient of [`Self::conv2d_kernel`] given the output gradient.
    fn conv2d_kernel_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// The bias gradient of [`Self::conv2d_kernel`] given the output gradient.
    fn conv2d_kernel_bias_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_bias_backward(x, bias, output_grad)
    }
}

impl Conv2dKernel for Flex {
    fn conv2d_kernel(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let f32 = x.dtype() == DType::F32 && weight.dtype() == DType::F32;
        if f32 && winograd::applies(dims4(&x), dims4(&weight), &options) {
            return winograd::conv2d_forward(x, weight, bias, &options);
        }
        if f32 && small::applies(dims4(&x), dims4(&weight), &options) {
            return small::conv2d_forward(x, weight, bias, &options);
        }
        if im2col::use_whole_image_forward(&x, &weight, &options) {
            match x.dtype() {
                DType::F32 => return im2col::conv2d_forward(x, weight, bias, &options, DType::F32, 1.0f32),
                DType::F64 => return im2col::conv2d_forward(x, weight, bias, &options, DType::F64, 1.0f64),
                _ => {}
            }
        }
        <Self as ModuleOps<Self>>::conv2d(x, weight, bias, options)
    }

    fn conv2d_kernel_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let shape = dims4(&x);
        if x.dtype() == DType::F32 && winograd::applies(shape, dims4(&weight), &options) {
            return winograd::conv2d_x_backward(shape, weight, output_grad, &options);
        }
        if options.groups == 1 {
            match x.dtype() {
                DType::F32 => {
                    return im2col::conv2d_x_backward(shape, weight, output_grad, &options, DType::F32, 1.0f32)
                }
                DType::F64 => {
                    return im2col::conv2d_x_backward(shape, weight, output_grad, &options, DType::F64, 1.0f64)
                }
                _ => {}
            }
        }
        <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, output_grad, options)
    }

    fn conv2d_kernel_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let shape = dims4(&weight);
        if x.dtype() == DType::F32 && winograd::applies(dims4(&x), shape, &options) {
            return winograd::conv2d_weight_backward(x, output_grad, shape, &options);
        }
        if x.dtype() == DType::F32 && small::applies(dims4(&x), shape, &options) {
            return small::conv2d_weight_backward(x, output_grad, shape, &options);
        }
        match x.dtype() {
            DType::F32 => im2col::conv2d_weight_backward(x, output_grad, shape, &options, DType::F32, 1.0f32),
            DType::F64 => im2col::conv2d_weight_backward(x, output_grad, shape, &options, DType::F64, 1.0f64),
            _ => <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, output_grad, options),
        }
    }

    fn conv2d_kernel_bias_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match output_grad.dtype() {
            DType::F32 => bias::conv2d_bias_grad::<f32>(output_grad, DType::F32),
            DType::F64 => bias::conv2d_bias_grad::<f64>(output_grad, DType::F64),
            _ => <Self as ModuleOps<Self>>::conv2d_bias_backward(x, bias, output_grad),
        }
    }
}

#[cfg(feature = "cuda")]
impl Conv2dKernel for burn::backend::Cuda {}

/// The backward pass of a convolution with a bias (parents: x, weight, bias).
#[derive(Debug)]
struct Conv2dBackward;

/// The backward pass of a convolution without a bias (parents: x, weight).
#[derive(Debug)]
struct Conv2dNoBiasBackward;

/// x, weight, bias (when there is one) and the options.
type ConvState<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, ConvOptions<2>);

fn conv_grads<B: Conv2dKernel>(
    state: ConvState<B>,
    dy: FloatTensor<B>,
    [want_x, want_w, want_b]: [bool; 3],
) -> [Option<FloatTensor<B>>; 3] {
    let (x, weight, bias, options) = state;
    let db = match (want_b, bias) {
        (true, Some(b)) => Some(B::conv2d_kernel_bias_backward(x.clone(), b, dy.clone())),
        _ => None,
    };
    let dw = want_w.then(|| B::conv2d_kernel_weight_backward(x.clone(), weight.clone(), dy.clone(), options.clone()));
    let dx = want_x.then(|| B::conv2d_kernel_x_backward(x, weight, dy, options));
    [dx, dw, db]
}

impl<B: Conv2dKernel> Backward<B, 3> for Conv2dBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let want = [0, 1, 2].map(|i| ops.parents[i].is_some());
        for (node, grad) in ops.parents.into_iter().zip(conv_grads::<B>(ops.state, dy, want)) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Conv2dKernel> Backward<B, 2> for Conv2dNoBiasBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let want = [ops.parents[0].is_some(), ops.parents[1].is_some(), false];
        let [dx, dw, _] = conv_grads::<B>(ops.state, dy, want);
        for (node, grad) in ops.parents.into_iter().zip([dx, dw]) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Conv2dKernel, C: CheckpointStrategy> Conv2dKernel for Autodiff<B, C> {
    fn conv2d_kernel(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match bias {
            Some(bias) => {
                let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
                let (x, w, b) = (x.primitive, weight.primitive, bias.primitive);
                match Conv2dBackward.prepare::<C>(nodes).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let y = B::conv2d_kernel(x.clone(), w.clone(), Some(b.clone()), options.clone());
                        prep.finish((x, w, Some(b), options), y)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(B::conv2d_kernel(x, w, Some(b), options)),
                }
            }
            None => {
                let nodes = [x.node.clone(), weight.node.clone()];
                let (x, w) = (x.primitive, weight.primitive);
                match Conv2dNoBiasBackward.prepare::<C>(nodes).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let y = B::conv2d_kernel(x.clone(), w.clone(), None, options.clone());
                        prep.finish((x, w, None, options), y)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(B::conv2d_kernel(x, w, None, options)),
                }
            }
        }
    }
}

/// `conv` applied to `x` through [`Conv2dKernel`]: what burn's `Conv2d::forward` computes. Symmetric padding
/// (explicit or valid, as the models use) runs through the kernels; asymmetric ("same" with an even kernel)
/// falls back to burn's own `Conv2d::forward`.
pub fn conv2d<B: Conv2dKernel>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => [top, left],
        _ => return conv.forward(x),
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    let weight = conv.weight.val().into_primitive().tensor();
    let bias = conv.bias.as_ref().map(|b| b.val().into_primitive().tensor());
    let x = x.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::conv2d_kernel(x, weight, bias, options)))
}
