//! ResNet-34 in torchvision's exact layout (conv1 7×7/2, bn1, maxpool, layer1–4 of BasicBlocks [3, 4, 6, 3],
//! avgpool, Dropout, fc), with torchvision's parameter names except `downsample.{0,1}` → `downsample.{conv,bn}`.
//! Must not depend on anything but burn.

use crate::model::Kernels;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use pneumoscope_kernels::batch_norm::batch_norm;
use pneumoscope_kernels::conv::conv2d;
use pneumoscope_kernels::pool::max_pool2d;
use pneumoscope_kernels::relu::relu;

/// Blocks per stage; stage `i` has `WIDTH << i` channels (64, 128, 256, 512).
pub const LAYERS: [usize; 4] = [3, 4, 6, 3];
pub const WIDTH: usize = 64;

fn conv<B: Backend>(cin: usize, cout: usize, k: usize, stride: usize, device: &B::Device) -> Conv2d<B> {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
        .with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true })
        .init(device)
}

/// The 1×1 projection on a block's shortcut when the shape changes (torchvision's `downsample`).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> BasicBlock<B> {
    fn new(cin: usize, cout: usize, stride: usize, device: &B::Device) -> Self {
        let downsample = (stride != 1 || cin != cout).then(|| Downsample {
            conv: conv(cin, cout, 1, stride, device),
            bn: BatchNormConfig::new(cout).init(device),
        });
        Self {
            conv1: conv(cin, cout, 3, stride, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv(cout, cout, 3, 1, device),
            bn2: BatchNormConfig::new(cout).init(device),
            downsample,
        }
    }
}

impl<B: Kernels> BasicBlock<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = match &self.downsample {
            Some(d) => batch_norm(&d.bn, conv2d(&d.conv, x.clone())),
            None => x.clone(),
        };
        let out = relu(batch_norm(&self.bn1, conv2d(&self.conv1, x)));
        let out = batch_norm(&self.bn2, conv2d(&self.conv2, out));
        relu(out + identity)
    }
}

#[derive(Module, Debug)]
pub struct ResNet34<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<BasicBlock<B>>,
    pub layer2: Vec<BasicBlock<B>>,
    pub layer3: Vec<BasicBlock<B>>,
    pub layer4: Vec<BasicBlock<B>>,
    pub avgpool: AdaptiveAvgPool2d,
    pub dropout: Dropout,
    pub fc: Linear<B>,
}

impl<B: Backend> ResNet34<B> {
    pub fn new(classes: usize, dropout: f64, device: &B::Device) -> Self {
        Self::with_width(classes, dropout, WIDTH, device)
    }

    /// The same network with `width` channels in the stem instead of 64 (stages: width × 1, 2, 4, 8). Only the
    /// tests use other widths, to check the torchvision import on small files with the real names.
    pub fn with_width(classes: usize, dropout: f64, width: usize, device: &B::Device) -> Self {
        let mut stages: Vec<Vec<BasicBlock<B>>> = Vec::new();
        let mut cin = width;
        for (i, &n) in LAYERS.iter().enumerate() {
            let c = width << i;
            let stride = if i == 0 { 1 } else { 2 };
            let blocks = (0..n)
                .map(|b| BasicBlock::new(if b == 0 { cin } else { c }, c, if b == 0 { stride } else { 1 }, device))
                .collect();
            stages.push(blocks);
            cin = c;
        }
        let mut stages = stages.into_iter();
        Self {
            conv1: conv(3, width, 7, 2, device),
            bn1: BatchNormConfig::new(width).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: stages.next().unwrap_or_default(),
            layer2: stages.next().unwrap_or_default(),
            layer3: stages.next().unwrap_or_default(),
            layer4: stages.next().unwrap_or_default(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(dropout).init(),
            fc: LinearConfig::new(width * 8, classes).init(device),
        }
    }

    /// Average pooling, dropout and the classifier: features → logits.
    pub fn head(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.avgpool.forward(x).flatten::<2>(1, 3);
        self.fc.forward(self.dropout.forward(x))
    }
}

impl<B: Kernels> ResNet34<B> {
    /// The feature map of the last stage (N×512×S/32×S/32), used by the classifier and by Grad-CAM.
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = max_pool2d(&self.maxpool, relu(batch_norm(&self.bn1, conv2d(&self.conv1, x))));
        for stage in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in stage {
                x = block.forward(x);
            }
        }
        x
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head(self.features(x))
    }
}
