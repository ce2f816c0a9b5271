//! The simple CNN: seven Conv3×3+ReLU layers in four MaxPool stages, global average pooling and a linear
//! head (8 weight layers). Must not depend on anything but burn and the project's kernels.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use pneumoscope_kernels::conv::conv2d;
use pneumoscope_kernels::pool::max_pool2d;
use pneumoscope_kernels::relu::relu;
use pneumoscope_kernels::Kernels;

/// Channel widths of the conv layers; a pool follows the layers marked in `POOL_AFTER`.
const WIDTHS: [usize; 7] = [16, 32, 32, 64, 64, 128, 128];
pub const POOL_AFTER: [bool; 7] = [true, false, true, false, true, false, true];

/// He (Kaiming) uniform initialisation for ReLU layers: weights in ±√(6 / fan_in), so each layer keeps the
/// signal's variance. PyTorch's default (±√(1 / fan_in)) divides it by about 6 per layer: after seven layers
/// without BatchNorm the input barely reaches the head, and some seeds never start learning (docs/evaluation.md).
pub fn he_uniform() -> burn::nn::Initializer {
    burn::nn::Initializer::KaimingUniform { gain: std::f64::consts::SQRT_2, fan_out_only: false }
}

#[derive(Module, Debug)]
pub struct SimpleCnn<B: Backend> {
    pub convs: Vec<Conv2d<B>>,
    pub pool: MaxPool2d,
    pub gap: AdaptiveAvgPool2d,
    pub fc: Linear<B>,
}

impl<B: Backend> SimpleCnn<B> {
    /// A fresh network with `classes` outputs.
    pub fn new(classes: usize, device: &B::Device) -> Self {
        let mut convs = Vec::new();
        let mut cin = 3;
        for &c in &WIDTHS {
            convs.push(
                Conv2dConfig::new([cin, c], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_initializer(he_uniform())
                    .init(device),
            );
            cin = c;
        }
        Self {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(cin, classes).init(device),
        }
    }
}

impl<B: Kernels> SimpleCnn<B> {
    /// The last conv layer's activations (N×128×S/8×S/8, before the final pool), used by Grad-CAM.
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = x;
        let last = self.convs.len() - 1;
        for (i, (conv, pool)) in self.convs.iter().zip(POOL_AFTER).enumerate() {
            x = relu(conv2d(conv, x));
            if pool && i != last {
                x = max_pool2d(&self.pool, x);
            }
        }
        x
    }

    /// Final pool, global average pooling and the linear layer: features → logits.
    pub fn head(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.gap.forward(max_pool2d(&self.pool, x)).flatten::<2>(1, 3);
        self.fc.forward(x)
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head(self.features(x))
    }
}
