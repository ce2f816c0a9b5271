//! ImageNet ResNet-34 import: torchvision-layout state dicts (the real `.pth` zip format written by torch.save, and
//! `.safetensors`) land tensor by tensor in our ResNet-34, the 1000-class head is replaced, a file that does not
//! fit is refused, freezing keeps the backbone still while the head learns, and `train --pretrained` uses it.
//!
//! tests/fixtures/resnet34-w2.* come from scripts/make_resnet_fixture.py: torchvision's ResNet-34 with a 2-channel
//! stem (same names, [3, 4, 6, 3] blocks), where float tensor number i holds i + (j mod 1000) / 1000 at position j.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use pneumoscope::data::loader::Batch;
use pneumoscope::model::pretrained::{load_resnet34, PretrainedError};
use pneumoscope::model::{Model, ResNet34};
use pneumoscope::train::step::{optimizer_config, train_step, StepLr};

type B = Flex;
type AD = Autodiff<Flex>;

fn fixture(ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("resnet34-w2.{ext}"))
}

/// (torchvision name, shape) in state_dict order, as the fixture script wrote them.
fn fixture_index() -> Vec<(String, Vec<usize>)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("json")).unwrap()).unwrap();
    assert_eq!(v["width"], 2);
    v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_string(),
                t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect(),
            )
        })
        .collect()
}

/// Our name for a torchvision tensor name.
fn ours(torch_name: &str) -> String {
    let n = torch_name.replace(".downsample.0.", ".downsample.conv.").replace(".downsample.1.", ".downsample.bn.");
    let is_bn = n.contains("bn") || n.contains("downsample.bn");
    match (is_bn, n.rsplit_once('.')) {
        (true, Some((head, "weight"))) => format!("{head}.gamma"),
        (true, Some((head, "bias"))) => format!("{head}.beta"),
        _ => n,
    }
}

/// Every float tensor of a module by dotted path, with its values.
fn values<BB: burn::tensor::backend::Backend, M: Module<BB>>(m: &M) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    struct V {
        path: Vec<String>,
        out: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    }
    impl<BB: burn::tensor::backend::Backend> ModuleVisitor<BB> for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<BB, D>>) {
            let t = p.val();
            let shape = t.dims().to_vec();
            self.out.insert(self.path.join("."), (shape, t.into_data().convert::<f32>().to_vec().unwrap()));
        }
    }
    let mut v = V { path: Vec::new(), out: BTreeMap::new() };
    m.visit(&mut v);
    v.out
}

fn small_resnet(width: usize) -> ResNet34<B> {
    let net = ResNet34::<B>::with_width(2, 0.0, width, &Default::default());
    pneumoscope::model::materialize(&net);
    net
}

#[test]
fn pth_and_safetensors_put_every_backbone_tensor_in_its_place_and_replace_the_head() {
    let index = fixture_index();
    assert_eq!(index.len(), 218, "torchvision's resnet34 state_dict has 218 entries");
    for ext in ["pth", "safetensors"] {
        let mut net = small_resnet(2);
        let before = values(&net);
        let summary = load_resnet34(&mut net, &fixture(ext)).unwrap_or_else(|e| panic!("{ext}: {e}"));
        let after = values(&net);
        let mut checked = 0;
        for (i, (name, shape)) in index.iter().enumerate() {
            if name.starts_with("fc.") || name.ends_with("num_batches_tracked") {
                continue;
            }
            let key = ours(name);
            let (our_shape, got) = after.get(&key).unwrap_or_else(|| panic!("{ext}: no tensor {key} for {name}"));
            assert_eq!(our_shape, shape, "{ext}: {name}");
            for (j, g) in got.iter().enumerate() {
                let want = i as f32 + (j % 1000) as f32 / 1000.0;
                assert!((g - want).abs() < 1e-5, "{ext}: {name}[{j}] = {g}, want {want}");
            }
            checked += 1;
        }
        // Every tensor of ours except the new head came from the file.
        assert_eq!(checked, after.len() - 2, "{ext}");
        assert_eq!(summary.loaded, checked, "{ext}");
        assert!(summary.ignored.iter().any(|n| n == "fc.weight"), "{ext}: {:?}", summary.ignored);
        assert!(summary.ignored.iter().any(|n| n.ends_with("num_batches_tracked")), "{ext}");
        // The 2-class head keeps its fresh initialisation: same values as before the import, 16 → 2.
        assert_eq!(after["fc.weight"], before["fc.weight"], "{ext}");
        assert_eq!(after["fc.weight"].0, vec![16, 2], "{ext}");
        assert_eq!(after["fc.bias"], before["fc.bias"], "{ext}");
    }
}

#[test]
fn a_file_with_other_shapes_is_refused_with_the_first_mismatches_and_the_model_is_untouched() {
    let mut net = small_resnet(4);
    let before = values(&net);
    let err = load_resnet34(&mut net, &fixture("pth")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PretrainedError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("resnet34-w2.pth"), "{msg}");
    assert!(msg.contains("has shape [2, 3, 7, 7], expected [4, 3, 7, 7]"), "{msg}");
    assert!(msg.matches("has shape").count() == 5, "lists the first five: {msg}");
    assert_eq!(values(&net), before);
}

#[test]
fn a_file_with_other_names_is_refused_naming_missing_and_unknown_tensors() {
    // A copy of the fixture without layer4.2 and with a tensor ResNet-34 does not have (as a ResNet-50 would).
    let bytes = std::fs::read(fixture("safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(n, _)| !n.starts_with("layer4.2.")).collect();
    let extra = vec![0u8; 4 * 2 * 2];
    kept.push((
        "layer4.0.conv3.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2, 1, 1], &extra).unwrap(),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("other.safetensors");
    safetensors::serialize_to_file(kept, None, &path).unwrap();

    let mut net = small_resnet(2);
    let msg = load_resnet34(&mut net, &path).unwrap_err().to_string();
    assert!(msg.contains("`layer4.0.conv3.weight` is not a ResNet-34 tensor"), "{msg}");
    assert!(msg.contains("`layer4.2.bn1.weight` is missing"), "{msg}");
    assert!(msg.contains("problem(s)"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_state_dict_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["garbage.pth", "garbage.safetensors"] {
        let path = tmp.path().join(name);
        std::fs::write(&path, b"this is not a checkpoint").unwrap();
        let msg = load_resnet34(&mut small_resnet(2), &path).unwrap_err().to_string();
        assert!(msg.contains(name), "{msg}");
    }
    let msg = load_resnet34(&mut small_resnet(2), &tmp.path().join("absent.pth")).unwrap_err().to_string();
    assert!(msg.contains("absent.pth") && msg.contains("no such file"), "{msg}");
}

fn batch(n: usize, size: usize) -> Batch {
    let images = (0..n * 3 * size * size).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    Batch { images, labels: (0..n).map(|i| (i % 2) as i64).collect(), indices: (0..n).collect(), image_size: size }
}

#[test]
fn a_frozen_backbone_stays_still_while_the_head_learns_then_trains_once_unfrozen() {
    let device = Default::default();
    let mut net = ResNet34::<AD>::with_width(2, 0.0, 2, &device);
    load_resnet34(&mut net, &fixture("safetensors")).unwrap();
    let mut model = Model::Resnet34(net);
    let cfg = pneumoscope::config::Config::default();
    let mut optim = optimizer_config(&cfg).init::<AD, Model<AD>>();
    let b = batch(4, 32);
    let start = values(&model);

    // Epoch 1 of a pretrained run with freeze_epochs = 1: the head only.
    let frozen = StepLr::for_epoch(&cfg, true, 1, 1e-2);
    assert_eq!(frozen, StepLr { head: 1e-2, backbone: None });
    for _ in 0..2 {
        model = train_step(model, &mut optim, &b, [1.0, 1.0], frozen, &device).0;
    }
    let mid = values(&model);
    for (name, v) in &start {
        let name = name.strip_prefix("Resnet34.").unwrap_or(name);
        let (mid, v) = (&mid[&format!("Resnet34.{name}")], v);
        // BatchNorm running statistics follow the data in training mode, frozen or not (as in PyTorch).
        if pneumoscope::model::is_running_stat(name) {
            continue;
        }
        if name.starts_with("fc.") {
            assert_ne!(mid, v, "{name} should have been trained");
        } else {
            assert_eq!(mid, v, "{name} changed while frozen");
        }
    }

    // Epoch 2: the backbone trains at backbone_lr_factor × the head's rate.
    let open = StepLr::for_epoch(&cfg, true, 2, 1e-2);
    assert_eq!(open.backbone, Some(1e-2 * cfg.training.backbone_lr_factor));
    model = train_step(model, &mut optim, &b, [1.0, 1.0], open, &device).0;
    let end = values(&model);
    for name in ["Resnet34.conv1.weight", "Resnet34.layer4.2.conv2.weight", "Resnet34.fc.weight"] {
        assert_ne!(end[name], mid[name], "{name} should train once unfrozen");
    }
    // Without pretrained weights nothing is frozen.
    assert_eq!(StepLr::for_epoch(&cfg, false, 1, 1e-3), StepLr::all(1e-3));
}

/// A full-size torchvision-layout ResNet-34 state dict (random values, the real names and shapes, the 1000-class
/// fc and int64 num_batches_tracked), as `.safetensors`.
fn full_size_imagenet_file(path: &Path) {
    let net = ResNet34::<B>::new(2, 0.0, &Default::default());
    pneumoscope::model::materialize(&net);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = Vec::new();
    let mut state = 1u64;
    let mut rnd = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    for (name, shape) in pneumoscope::model::named_tensors::<B, _>(&net) {
        if name.starts_with("fc.") {
            continue;
        }
        let torch = name
            .replace(".downsample.conv.", ".downsample.0.")
            .replace(".downsample.bn.", ".downsample.1.")
            .replace(".gamma", ".weight")
            .replace(".beta", ".bias");
        let n: usize = shape.iter().product();
        let vals: Vec<f32> =
            if torch.ends_with("running_var") { vec![1.0; n] } else { (0..n).map(|_| rnd()).collect() };
        tensors.push((
            torch.clone(),
            shape,
            vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            safetensors::Dtype::F32,
        ));
        if torch.ends_with("running_var") {
            let nbt = torch.replace("running_var", "num_batches_tracked");
            tensors.push((nbt, vec![], 100i64.to_le_bytes().to_vec(), safetensors::Dtype::I64));
        }
    }
    let fc_w: Vec<u8> = (0..1000 * 512).flat_map(|_| rnd().to_le_bytes()).collect();
    tensors.push(("fc.weight".into(), vec![1000, 512], fc_w, safetensors::Dtype::F32));
    tensors.push(("fc.bias".into(), vec![1000], vec![0u8; 4000], safetensors::Dtype::F32));
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, d, t)| (n.clone(), safetensors::tensor::TensorView::new(*t, s.clone(), d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn train_pretrained_fine_tunes_resnet34_from_the_file_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synth(&data, 40, 12, 9);
    let weights = tmp.path().join("resnet34-imagenet.safetensors");
    full_size_imagenet_file(&weights);
    let d = data.to_str().unwrap();
    let w = weights.to_str().unwrap();
    let args = [
        "train",
        "--no-tui",
        "--data",
        d,
        "--models",
        "resnet34",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--pretrained",
        w,
    ];
    let out = common::run_in(tmp.path(), &args);
    let log = common::text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("ResNet-34 starts from ImageNet weights"), "{log}");
    assert!(log.contains("from imagenet (resnet34-imagenet.safetensors)"), "{log}");
    assert!(log.contains("epoch 1 trains the new head only"), "{log}");
    assert!(log.contains("backbone trains at 0.1 × the head's learning rate from epoch 2"), "{log}");
    let run = std::fs::read_dir(tmp.path().join("runs")).unwrap().next().unwrap().unwrap().path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["models"][0]["init"], "imagenet (resnet34-imagenet.safetensors)");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("imagenet (resnet34-imagenet.safetensors)"), "{md}");
    let meta = pneumoscope::train::checkpoint::load_meta(&run.join("checkpoints/resnet34-best.ckpt")).unwrap();
    assert!(matches!(meta.init, pneumoscope::model::Init::ImageNet(_)), "{}", meta.init);

    // A file that is not ResNet-34 weights stops the run before anything trains, naming the file (exit 2).
    let bad = tmp.path().join("resnet18.pth");
    std::fs::copy(fixture("pth"), &bad).unwrap();
    let out = common::run_in(tmp.path(), &["train", "--no-tui", "--data", d, "--pretrained", bad.to_str().unwrap()]);
    let log = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("resnet18.pth") && log.contains("do not fit torchvision's ResNet-34"), "{log}");
    let out = common::run_in(tmp.path(), &["train", "--no-tui", "--data", d, "--pretrained", "nowhere.pth"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::text(&out).contains("nowhere.pth is not a file"), "{}", common::text(&out));
}

#[test]
fn imported_weights_give_pytorchs_features_in_eval_mode() {
    // PyTorch's eval-mode pooled features for two fixed images, computed by scripts/make_resnet_fixture.py from
    // resnet34-w2-random.pth (random weights, non-trivial BatchNorm statistics).
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("json").with_file_name("resnet34-w2-random.json")).unwrap(),
    )
    .unwrap();
    let mut net = small_resnet(2);
    load_resnet34(&mut net, &fixture("pth").with_file_name("resnet34-w2-random.pth")).unwrap();
    let (n, size) = (2, 40);
    let x: Vec<f32> = (0..n * 3 * size * size).map(|k| ((k * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    let x = Tensor::<B, 1>::from_floats(x.as_slice(), &Default::default()).reshape([n, 3, size, size]);
    let feats = net.features(x).mean_dim(3).mean_dim(2).reshape([n, 16]);
    let got = feats.into_data().to_vec::<f32>().unwrap();
    let want: Vec<f32> = expected["features"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * scale + 1e-6, "feature {i}: ours {g}, PyTorch {w}");
    }
}
