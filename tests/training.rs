//! Training logic through the library API: learning on a fixed batch, train/eval behaviour of BatchNorm and
#![allow(clippy::single_range_in_vec_init)]
//! Dropout, weighted loss, and checkpoint round trips.

mod common;
use common::checkpoint_meta as meta_of;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData, Tolerance};
use pneumoscope::config::{ClipMode, Config};
use pneumoscope::model::{Model, ModelKind};
use pneumoscope::train::checkpoint::{self, CheckpointMeta};
use pneumoscope::train::infer::{cross_entropy, probabilities};
use pneumoscope::train::step::{init_optimizer, optimizer_config};

type B = burn::backend::Flex;
type AD = Autodiff<B>;

/// A fixed, learnable batch: class 1 images are brighter in the centre.
fn fixed_batch(n: usize, s: usize) -> (Vec<f32>, Vec<i64>) {
    let mut x = vec![0.0f32; n * 3 * s * s];
    let mut y = vec![0i64; n];
    for i in 0..n {
        y[i] = (i % 2) as i64;
        for c in 0..3 {
            for p in 0..s * s {
                let (r, q) = (p / s, p % s);
                let centre = r > s / 4 && r < 3 * s / 4 && q > s / 4 && q < 3 * s / 4;
                let noise = ((i * 31 + p * 7 + c) % 13) as f32 / 13.0 - 0.5;
                x[(i * 3 + c) * s * s + p] = noise * 0.5 + if centre && y[i] == 1 { 1.0 } else { 0.0 };
            }
        }
    }
    (x, y)
}

#[test]
fn loss_decreases_on_a_tiny_fixed_batch_for_every_model() {
    let device = Default::default();
    let (x, y) = fixed_batch(8, 32);
    let mut cfg = Config::default();
    cfg.training.grad_clip = 0.0;
    for kind in ModelKind::ALL {
        <AD as burn::tensor::backend::Backend>::seed(&device, 7);
        let mut model: Model<AD> = Model::new(kind, 0.0, &device);
        let mut optim = optimizer_config(&cfg).init::<AD, Model<AD>>();
        let xs = Tensor::<AD, 4>::from_data(TensorData::new(x.clone(), [8, 3, 32, 32]), &device);
        let ys = Tensor::<AD, 1, Int>::from_data(TensorData::new(y.clone(), [8]), &device);
        let mut losses = Vec::new();
        for _ in 0..12 {
            let loss = cross_entropy(model.forward(xs.clone()), ys.clone(), &[1.0, 1.0]);
            losses.push(loss.clone().into_scalar());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let first = losses[0];
        let last = *losses.last().unwrap();
        assert!(last < first * 0.7, "{kind}: loss {first} → {last} ({losses:?})");
    }
}

/// Every float parameter's values, in visiting order.
fn param_data(model: &Model<AD>) -> Vec<TensorData> {
    struct Collect(Vec<TensorData>);
    impl burn::module::ModuleVisitor<AD> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<AD, D>>) {
            self.0.push(p.val().into_data());
        }
    }
    let mut c = Collect(Vec::new());
    burn::module::Module::visit(model, &mut c);
    c.0
}

/// One training step of `model` on a fixed batch with `optim` (learning rate 1e-3).
fn adam_step<O: Optimizer<Model<AD>, AD>>(
    model: Model<AD>,
    optim: &mut O,
    xs: &Tensor<AD, 4>,
    ys: &Tensor<AD, 1, Int>,
) -> Model<AD> {
    let loss = cross_entropy(model.forward(xs.clone()), ys.clone(), &[1.0, 1.0]);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(1e-3, model, grads)
}

#[test]
fn the_training_optimiser_matches_burns_adam_bit_for_bit() {
    let device = Default::default();
    let (x, y) = fixed_batch(4, 32);
    let xs = Tensor::<AD, 4>::from_data(TensorData::new(x, [4, 3, 32, 32]), &device);
    let ys = Tensor::<AD, 1, Int>::from_data(TensorData::new(y, [4]), &device);
    // Weight decay and clipping on, as the defaults; no dropout, so both runs see the same forward passes.
    for mode in [ClipMode::Value, ClipMode::Norm] {
        let mut cfg = Config::default();
        cfg.training.grad_clip_mode = mode;
        // A threshold that clips some of this model's gradients (by value) and some of its tensors (by norm).
        cfg.training.grad_clip = if mode == ClipMode::Value { 0.01 } else { 0.05 };
        assert!(cfg.training.weight_decay > 0.0);
        let start: Model<AD> = Model::new(ModelKind::Regularized, 0.0, &device);
        let mut reference = optimizer_config(&cfg).init::<AD, Model<AD>>();
        let mut ours = init_optimizer::<AD, _>(&cfg, &start, None);
        assert!(reference.to_record().is_empty());
        // The moments exist before the first step: one zero-state record per trainable tensor.
        let held = ours.to_record();
        let mut ids = Vec::new();
        struct Ids<'a>(&'a mut Vec<burn::module::ParamId>);
        impl burn::module::ModuleVisitor<AD> for Ids<'_> {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<AD, D>>) {
                if p.val().is_require_grad() {
                    self.0.push(p.id);
                }
            }
        }
        burn::module::Module::visit(&start, &mut Ids(&mut ids));
        assert_eq!(held.len(), ids.len());
        assert!(ids.iter().all(|id| held.contains_key(id)));
        let (mut a, mut b) = (start.clone(), start.clone());
        for step in 0..3 {
            a = adam_step(a, &mut reference, &xs, &ys);
            b = adam_step(b, &mut ours, &xs, &ys);
            assert!(param_data(&a) != param_data(&start), "{mode:?} step {step}: nothing was trained");
            assert!(
                param_data(&a) == param_data(&b),
                "{mode:?} step {step}: parameters differ between burn's Adam and the training optimiser"
            );
        }
        // Checkpoints keep burn's record: moments saved from burn's Adam (as checkpoints written before the
        // fused optimiser hold them) resume in the training optimiser as they would in burn's.
        use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let bytes = Recorder::<AD>::record(&recorder, reference.to_record(), ()).expect("serialise");
        let mut resumed =
            init_optimizer::<AD, _>(&cfg, &b, None).load_record(recorder.load(bytes, &device).expect("load"));
        a = adam_step(a, &mut reference, &xs, &ys);
        b = adam_step(b, &mut resumed, &xs, &ys);
        assert!(param_data(&a) == param_data(&b), "{mode:?}: burn's saved moments resume differently");
    }
    // Only the named parameters: a frozen backbone gets no moments until it trains.
    let cfg = Config::default();
    let model: Model<AD> = Model::new(ModelKind::Resnet34, 0.5, &device);
    let head = model.head_param_ids();
    let only = init_optimizer::<AD, _>(&cfg, &model, Some(&head)).to_record();
    assert_eq!(only.len(), head.len());
    assert!(head.iter().all(|id| only.contains_key(id)));
}

#[test]
fn eval_mode_is_deterministic_and_uses_running_statistics() {
    let device = Default::default();
    let (x, y) = fixed_batch(8, 32);
    let xs = Tensor::<AD, 4>::from_data(TensorData::new(x.clone(), [8, 3, 32, 32]), &device);
    let ys = Tensor::<AD, 1, Int>::from_data(TensorData::new(y, [8]), &device);
    for kind in [ModelKind::Regularized, ModelKind::Resnet34] {
        let mut model: Model<AD> = Model::new(kind, 0.5, &device);
        let mut optim = optimizer_config(&Config::default()).init::<AD, Model<AD>>();
        // Training forward passes: dropout makes two passes differ.
        let a = model.forward(xs.clone()).into_data();
        let b = model.forward(xs.clone()).into_data();
        assert_ne!(a, b, "{kind}: training mode should be stochastic (dropout)");
        for _ in 0..3 {
            let loss = cross_entropy(model.forward(xs.clone()), ys.clone(), &[1.0, 1.0]);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let valid = model.valid();
        let xv = Tensor::<B, 4>::from_data(TensorData::new(x.clone(), [8, 3, 32, 32]), &device);
        let e1 = valid.forward(xv.clone()).into_data();
        let e2 = valid.forward(xv.clone()).into_data();
        assert_eq!(e1, e2, "{kind}: eval mode must be deterministic");
        // Running statistics, not batch statistics: one image alone gives the same logits as in the batch.
        let single = valid.forward(xv.clone().slice([0..1])).into_data();
        let in_batch = valid.forward(xv).slice([0..1]).into_data();
        single.assert_approx_eq::<f32>(&in_batch, Tolerance::absolute(1e-4));
    }
}

#[test]
fn class_weights_weigh_the_loss_like_pytorch() {
    let device = Default::default();
    // logits favour class 0 for both samples; targets 0 and 1.
    let logits = Tensor::<B, 2>::from_floats([[2.0, 0.0], [2.0, 0.0]], &device);
    let y = Tensor::<B, 1, Int>::from_ints([0, 1], &device);
    let l0 = (1.0f64 + (-2.0f64).exp()).ln(); // −log softmax for the right class
    let l1 = (1.0f64 + 2.0f64.exp()).ln();
    let plain: f32 = cross_entropy(logits.clone(), y.clone(), &[1.0, 1.0]).into_scalar();
    assert!((plain as f64 - (l0 + l1) / 2.0).abs() < 1e-5);
    let weighted: f32 = cross_entropy(logits, y, &[1.0, 3.0]).into_scalar();
    assert!((weighted as f64 - (l0 + 3.0 * l1) / 4.0).abs() < 1e-5);
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs_and_refuses_garbage() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let (x, _) = fixed_batch(4, 32);
    let xs = Tensor::<B, 4>::from_data(TensorData::new(x, [4, 3, 32, 32]), &device);
    for kind in ModelKind::ALL {
        let model: Model<B> = Model::new(kind, 0.5, &device);
        let meta = CheckpointMeta {
            format: checkpoint::FORMAT_VERSION,
            model: kind,
            image_size: 32,
            mean: [0.1, 0.2, 0.3],
            std: [0.4, 0.5, 0.6],
            class_names: vec!["NORMAL".into(), "PNEUMONIA".into()],
            threshold: 0.42,
            dropout: 0.5,
            epoch: 3,
            val_loss: Some(0.25),
            val_accuracy: Some(0.9),
            synthetic_data: true,
            data_source: pneumoscope::data::demo::DataSource::Synthetic,
            init: pneumoscope::model::Init::Scratch,
            pneumoscope_version: "test".into(),
            created: "now".into(),
            train_state: None,
            tta: 1,
            split: None,
        };
        let path = dir.path().join(format!("{kind}.ckpt"));
        checkpoint::save(&path, &meta, &model).unwrap();
        let (meta2, loaded) = checkpoint::load::<B>(&path, &device).unwrap();
        assert_eq!(meta2, meta);
        assert_eq!(checkpoint::load_meta(&path).unwrap(), meta);
        let a = probabilities(model.forward(xs.clone()));
        let b = probabilities(loaded.forward(xs.clone()));
        assert_eq!(a, b, "{kind}: outputs differ after the round trip");
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    // Truncated and foreign files are refused with a message naming the file.
    let good = dir.path().join("simple.ckpt");
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = checkpoint::load::<B>(&cut, &device).err().unwrap().to_string();
    assert!(err.contains("cut.ckpt") && err.contains("truncated"), "{err}");
    let junk = dir.path().join("junk.ckpt");
    std::fs::write(&junk, b"hello").unwrap();
    let err = checkpoint::load::<B>(&junk, &device).err().unwrap().to_string();
    assert!(err.contains("junk.ckpt") && err.contains("not a pneumoscope checkpoint"), "{err}");
}

/// Property: a damaged checkpoint (any single bit flipped, any truncation) never panics on load and is never
/// taken silently as a different model — it is refused, naming the file.
#[test]
fn damaged_checkpoints_are_refused_never_loaded_as_another_model() {
    use rand::{Rng, SeedableRng};
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let model: Model<B> = Model::new(ModelKind::Simple, 0.5, &device);
    let path = dir.path().join("good.ckpt");
    checkpoint::save(&path, &meta_of(ModelKind::Simple), &model).unwrap();
    let good = std::fs::read(&path).unwrap();
    let (x, _) = fixed_batch(2, 32);
    let xs = Tensor::<B, 4>::from_data(TensorData::new(x, [2, 3, 32, 32]), &device);
    let expected = probabilities(model.forward(xs.clone()));
    let damaged = dir.path().join("damaged.ckpt");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for _ in 0..300 {
        let mut b = good.clone();
        let bit = rng.random_range(0..b.len() * 8);
        b[bit / 8] ^= 1 << (bit % 8);
        cases.push(b);
    }
    // Flips in the header and the frames, where lengths and kinds live.
    for bit in 0..(17 + 12 + 64) * 8 {
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        cases.push(b);
    }
    for _ in 0..60 {
        cases.push(good[..rng.random_range(0..good.len())].to_vec());
    }
    for (i, bytes) in cases.iter().enumerate() {
        std::fs::write(&damaged, bytes).unwrap();
        let loaded = std::panic::catch_unwind(|| checkpoint::load::<B>(&damaged, &device))
            .unwrap_or_else(|_| panic!("case {i}: loading a damaged checkpoint panicked"));
        match loaded {
            Err(e) => assert!(e.to_string().contains("damaged.ckpt"), "case {i}: {e}"),
            Ok((_, m)) => {
                assert_eq!(probabilities(m.forward(xs.clone())), expected, "case {i}: a different model was loaded")
            }
        }
    }
}

#[test]
fn impossible_header_values_are_refused_before_a_model_is_built() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let model: Model<B> = Model::new(ModelKind::Simple, 0.5, &device);
    for (what, meta) in [
        ("image_size", CheckpointMeta { image_size: 0, ..meta_of(ModelKind::Simple) }),
        ("image_size", CheckpointMeta { image_size: 100_000, ..meta_of(ModelKind::Simple) }),
        ("threshold", CheckpointMeta { threshold: 7.5, ..meta_of(ModelKind::Simple) }),
        ("std", CheckpointMeta { std: [0.4, 0.0, 0.6], ..meta_of(ModelKind::Simple) }),
        ("ensemble", CheckpointMeta { model: ModelKind::Ensemble, ..meta_of(ModelKind::Simple) }),
    ] {
        let path = dir.path().join("bad.ckpt");
        checkpoint::save(&path, &meta, &model).unwrap();
        let Err(err) = checkpoint::load::<B>(&path, &device) else { panic!("{what}: accepted") };
        let err = err.to_string();
        assert!(err.contains("bad.ckpt") && err.contains("invalid header") && err.contains(what), "{err}");
    }
    // Weights of another architecture under a valid header: an error naming the file, not a panic.
    let path = dir.path().join("wrong-kind.ckpt");
    checkpoint::save(&path, &meta_of(ModelKind::Regularized), &model).unwrap();
    let Err(err) = checkpoint::load::<B>(&path, &device) else { panic!("weights of another model: accepted") };
    let err = err.to_string();
    assert!(err.contains("wrong-kind.ckpt") && err.contains("do not fit"), "{err}");
}

#[test]
fn checkpoints_written_before_checksums_still_load() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let model: Model<B> = Model::new(ModelKind::Simple, 0.5, &device);
    let path = dir.path().join("v2.ckpt");
    checkpoint::save(&path, &meta_of(ModelKind::Simple), &model).unwrap();
    let b = std::fs::read(&path).unwrap();
    // Re-frame the sections the old way: magic PNEUMOSCOPE-CKPT, then u64 length before each, no checksums.
    let len = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (h, hlen) = (17 + 12, len(17));
    let (r, rlen) = (h + hlen + 12, len(h + hlen));
    let mut old = b"PNEUMOSCOPE-CKPT\n".to_vec();
    old.extend((hlen as u64).to_le_bytes());
    old.extend(&b[h..h + hlen]);
    old.extend((rlen as u64).to_le_bytes());
    old.extend(&b[r..r + rlen]);
    let v1 = dir.path().join("v1.ckpt");
    std::fs::write(&v1, old).unwrap();
    let (meta, loaded) = checkpoint::load::<B>(&v1, &device).unwrap();
    assert_eq!(meta, meta_of(ModelKind::Simple));
    let (x, _) = fixed_batch(2, 32);
    let xs = Tensor::<B, 4>::from_data(TensorData::new(x, [2, 3, 32, 32]), &device);
    assert_eq!(probabilities(loaded.forward(xs.clone())), probabilities(model.forward(xs)));
    // Rewriting its header (the operating point) keeps the old layout readable.
    checkpoint::rewrite_meta(&v1, &CheckpointMeta { threshold: 0.7, ..meta }).unwrap();
    assert_eq!(checkpoint::load_meta(&v1).unwrap().threshold, 0.7);
    assert!(checkpoint::load::<B>(&v1, &device).is_ok());
}
