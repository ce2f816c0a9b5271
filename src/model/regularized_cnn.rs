//! The regularized CNN: the simple CNN's family with BatchNorm after every conv, two more conv layers, and a
//! two-layer head with Dropout. Must not depend on anything but burn.

use crate::model::Kernels;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use pneumoscope_kernels::batch_norm::batch_norm;
use pneumoscope_kernels::conv::conv2d;
use pneumoscope_kernels::pool::max_pool2d;
use pneumoscope_kernels::relu::relu;

const WIDTHS: [usize; 9] = [16, 32, 32, 64, 64, 128, 128, 256, 256];
pub const POOL_AFTER: [bool; 9] = [true, false, true, false, true, false, true, false, true];

/// Conv3×3 (no bias: BatchNorm's shift replaces it) + BatchNorm + ReLU.
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

#[derive(Module, Debug)]
pub struct RegularizedCnn<B: Backend> {
    pub blocks: Vec<ConvBn<B>>,
    pub pool: MaxPool2d,
    pub gap: AdaptiveAvgPool2d,
    pub dropout: Dropout,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> RegularizedCnn<B> {
    /// A fresh network with `classes` outputs.
    pub fn new(classes: usize, dropout: f64, device: &B::Device) -> Self {
        let mut blocks = Vec::new();
        let mut cin = 3;
        for &c in &WIDTHS {
            blocks.push(ConvBn {
                conv: Conv2dConfig::new([cin, c], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_bias(false)
                    .init(device),
                bn: BatchNormConfig::new(c).init(device),
            });
            cin = c;
        }
        Self {
            blocks,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(dropout).init(),
            fc1: LinearConfig::new(cin, 128).init(device),
            fc2: LinearConfig::new(128, classes).init(device),
        }
    }
}

impl<B: Kernels> RegularizedCnn<B> {
    /// The last conv block's activations (before a final pool, if any), used by Grad-CAM.
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = x;
        let last = self.blocks.len() - 1;
        for (i, (block, pool)) in self.blocks.iter().zip(POOL_AFTER).enumerate() {
            x = relu(batch_norm(&block.bn, conv2d(&block.conv, x)));
            if pool && i != last {
                x = max_pool2d(&self.pool, x);
            }
        }
        x
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head(self.features(x))
    }
}

impl<B: Kernels> RegularizedCnn<B> {
    /// Final pool (if any), global average pooling and the two-layer head with dropout: features → logits.
    pub fn head(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = if POOL_AFTER[self.blocks.len() - 1] { max_pool2d(&self.pool, x) } else { x };
        let x = self.gap.forward(x).flatten::<2>(1, 3);
        let x = relu(self.fc1.forward(self.dropout.forward(x)));
        self.fc2.forward(self.dropout.forward(x))
    }
}
