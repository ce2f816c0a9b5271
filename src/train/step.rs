//! One training step and what sets it up: the optimiser (burn's Adam as the config describes it, run fused),
//! the learning rates of a step, the batch specifications for training and evaluation. What `bench`, the tests
//! and the examples import to train outside the engine.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;

use super::infer::{smoothed_cross_entropy, to_tensors, ElemF64, LossSpec};
use crate::config::{ClipMode, Config};
use crate::data::loader::BatchSpec;
use crate::model::Model;
use pneumoscope_kernels::adam::{AdamKernel, FusedAdam, Optim};

/// The learning rates of one step: the classifier head's and the rest's (`None`: the rest is frozen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLr {
    pub head: f64,
    pub backbone: Option<f64>,
}

impl StepLr {
    /// One learning rate for every parameter.
    pub fn all(lr: f64) -> Self {
        Self { head: lr, backbone: Some(lr) }
    }

    /// Fine-tuning from pretrained weights: the head alone during the first `freeze_epochs` epochs, then the
    /// backbone too at `backbone_lr_factor` × the head's rate. Without pretrained weights: one rate.
    pub fn for_epoch(cfg: &Config, pretrained: bool, epoch: usize, lr: f64) -> Self {
        if !pretrained {
            Self::all(lr)
        } else if epoch <= cfg.training.freeze_epochs {
            Self { head: lr, backbone: None }
        } else {
            Self { head: lr, backbone: Some(lr * cfg.training.backbone_lr_factor) }
        }
    }
}

/// One optimiser step on a host batch: forward, weighted cross-entropy, backward, Adam with clipping.
/// Returns the updated model, the batch loss and the number of correct predictions.
pub fn train_step<B, O>(
    model: Model<B>,
    optim: &mut O,
    batch: &crate::data::loader::Batch,
    loss: impl Into<LossSpec>,
    lr: StepLr,
    device: &B::Device,
) -> (Model<B>, f64, usize)
where
    B: burn::tensor::backend::AutodiffBackend + crate::model::Kernels,
    O: Optimizer<Model<B>, B>,
{
    let n = batch.len();
    let (x, y) = to_tensors::<B>(batch, device);
    let logits = model.forward(x);
    let loss = smoothed_cross_entropy(logits.clone(), y.clone(), loss.into());
    let hits = logits.argmax(1).reshape([n]).equal(y).int().sum();
    let mut grads = loss.backward();
    let model = if lr.backbone == Some(lr.head) {
        let grads = GradientsParams::from_grads(grads, &model);
        optim.step(lr.head, model, grads)
    } else {
        // Two groups, as PyTorch's per-parameter-group learning rates: the head, then the rest (if not frozen).
        // Adam keeps its moments per parameter, so stepping the groups one after the other is the same update.
        let head = GradientsParams::from_params(&mut grads, &model, &model.head_param_ids());
        let rest = GradientsParams::from_grads(grads, &model);
        let model = optim.step(lr.head, model, head);
        match lr.backbone {
            Some(blr) => optim.step(blr, model, rest),
            None => model,
        }
    };
    (model, loss.into_scalar().elem_f64(), hits.into_scalar().elem_f64() as usize)
}

/// Training batches: shuffled, augmented as `data` says, a last batch of one image dropped.
pub fn train_spec(cfg: &Config) -> BatchSpec {
    BatchSpec {
        batch_size: cfg.training.batch_size,
        shuffle: true,
        augment: crate::data::augment::Augment::of(&cfg.data),
        seed: cfg.data.seed,
        mean: cfg.data.mean,
        std: cfg.data.std,
        drop_single: true,
        prefetch: 4,
        balanced: cfg.training.sampler == crate::config::Sampler::Balanced,
        task: cfg.data.task,
    }
}

/// Evaluation batches: fixed order, no augmentation, larger batches.
pub fn eval_spec(cfg: &Config) -> BatchSpec {
    BatchSpec {
        batch_size: cfg.training.batch_size.max(32),
        shuffle: false,
        augment: Default::default(),
        drop_single: false,
        prefetch: 2,
        balanced: false,
        ..train_spec(cfg)
    }
}

/// burn's Adam with the config's settings (PyTorch's epsilon and betas; weight decay as L2 on the gradient;
/// clipping by value or per-parameter norm). Training runs [`init_optimizer`]'s fused version of it; this is the
/// reference the tests hold that one to.
pub fn optimizer_config(cfg: &Config) -> AdamConfig {
    let t = &cfg.training;
    let clip = (t.grad_clip > 0.0).then_some(match t.grad_clip_mode {
        ClipMode::Value => GradientClippingConfig::Value(t.grad_clip as f32),
        ClipMode::Norm => GradientClippingConfig::Norm(t.grad_clip as f32),
    });
    AdamConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay((t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32)))
        .with_grad_clipping(clip)
}

/// The optimiser pneumoscope trains with: Adam as [`optimizer_config`] describes it, run as one pass per
/// parameter ([`pneumoscope_kernels::adam::FusedAdam`]), with its moments already allocated (zeros at time 0) for the parameters
/// that `only` names (all trainable ones when `None`). The first update is then bit for bit the lazy first step
/// (`β·0 + (1−β)·g` is `(1−β)·g`), but the moments take their memory before the first forward pass instead of the
/// memory the first batch's activations leave behind; created lazily, they pushed the second step's activations
/// onto fresh pages, and first-touch page faults made that step up to 1.6× a steady one (docs/benchmarks.md).
pub fn init_optimizer<B: AutodiffBackend<InnerBackend: AdamKernel>, M: AutodiffModule<B>>(
    cfg: &Config,
    model: &M,
    only: Option<&[burn::module::ParamId]>,
) -> Optim<M, B> {
    use burn::module::{ModuleVisitor, Param, ParamId};
    use burn::optim::record::AdaptorRecord;
    use burn::optim::{AdamState, AdaptiveMomentumState};
    use burn::tensor::Tensor;
    type Records<B> = Vec<(ParamId, AdaptorRecord<FusedAdam, B>)>;
    struct Zeros<'a, B: AutodiffBackend<InnerBackend: AdamKernel>> {
        only: Option<&'a [ParamId]>,
        records: Records<B>,
    }
    impl<B: AutodiffBackend<InnerBackend: AdamKernel>> ModuleVisitor<B> for Zeros<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if !value.is_require_grad() || self.only.is_some_and(|ids| !ids.contains(&param.id)) {
                return;
            }
            let inner = value.inner();
            let zeros = || inner.zeros_like();
            let state = AdamState::new(AdaptiveMomentumState::new(0, zeros(), zeros()));
            self.records.push((param.id, AdaptorRecord::from_state(state)));
        }
    }
    let mut zeros = Zeros { only, records: Records::<B>::new() };
    model.visit(&mut zeros);
    let t = &cfg.training;
    let clip = (t.grad_clip > 0.0).then_some(t.grad_clip as f32);
    let adam = FusedAdam {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: (t.weight_decay > 0.0).then_some(t.weight_decay as f32),
        clip_value: clip.filter(|_| t.grad_clip_mode == ClipMode::Value),
    };
    let optim: Optim<M, B> =
        pneumoscope_kernels::adam::build(adam, clip.filter(|_| t.grad_clip_mode == ClipMode::Norm));
    let mut records = optim.to_record();
    records.extend(zeros.records);
    optim.load_record(records)
}
