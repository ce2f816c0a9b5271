//! `pneumoscope export`: the safetensors file holds exactly PyTorch's state dict for each architecture (names and
//! shapes from tests/fixtures/pytorch-state-dicts.json, written by scripts/make_export_fixture.py from
//! scripts/bench_pytorch.py), with the values laid out as PyTorch expects (Linear weights transposed, BatchNorm
//! gamma/beta as weight/bias, running statistics included); model.json says how to feed it. The probabilities
//! PyTorch computes from such a file are checked with scripts/load_export.py (docs/export.md).

mod common;

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use common::{run_in, text};
use pneumoscope::commands::export::ExportManifest;
use pneumoscope::model::{Init, Model, ModelKind};
use pneumoscope::train::checkpoint::{self, CheckpointMeta};

type B = burn::backend::Flex;

fn meta_of(kind: ModelKind) -> CheckpointMeta {
    CheckpointMeta {
        format: checkpoint::FORMAT_VERSION,
        model: kind,
        image_size: 48,
        mean: [0.1, 0.2, 0.3],
        std: [0.4, 0.5, 0.6],
        class_names: vec!["NORMAL".into(), "PNEUMONIA".into()],
        threshold: 0.37,
        dropout: 0.25,
        epoch: 4,
        val_loss: Some(0.2),
        val_accuracy: Some(0.93),
        synthetic_data: false,
        data_source: Default::default(),
        init: Init::Scratch,
        pneumoscope_version: "test".into(),
        created: "now".into(),
        train_state: None,
        tta: 1,
        split: None,
    }
}

fn pytorch_state_dicts() -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pytorch-state-dicts.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn values(t: &safetensors::tensor::TensorView) -> Vec<f32> {
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn flat<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn every_architecture_exports_exactly_pytorchs_state_dict() {
    let want = pytorch_state_dicts();
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    for kind in ModelKind::ALL {
        let model = Model::<B>::new(kind, 0.25, &device);
        let ckpt = dir.path().join(format!("{kind}.ckpt"));
        checkpoint::save(&ckpt, &meta_of(kind), &model).unwrap();
        let out = dir.path().join(format!("export-{kind}"));
        let o = run_in(dir.path(), &["export", "--checkpoint", ckpt.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{kind}: {}", text(&o));

        // Names and shapes: exactly PyTorch's.
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let have: BTreeMap<String, Vec<usize>> =
            st.tensors().into_iter().map(|(n, t)| (n.to_string(), t.shape().to_vec())).collect();
        let expected = &want[kind.name()];
        let missing: Vec<_> = expected.keys().filter(|k| !have.contains_key(*k)).collect();
        let extra: Vec<_> = have.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{kind}: missing {missing:?}, not PyTorch's {extra:?}");
        for (name, shape) in expected {
            assert_eq!(&have[name], shape, "{kind}: {name}");
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
        assert_eq!(meta.get("pneumoscope_architecture").map(String::as_str), Some(kind.name()));

        // Values where the layouts differ: the head's Linear weight (burn [in, out], PyTorch [out, in]) and a
        // BatchNorm's scale, shift and running variance.
        let (head_name, head, bn) = match &model {
            Model::Simple(m) => ("20.weight", m.fc.weight.val(), None),
            Model::Regularized(m) => {
                let bn = &m.blocks[0].bn;
                ("38.weight", m.fc2.weight.val(), Some(("1", bn.gamma.val(), bn.beta.val(), bn.running_var.value())))
            }
            Model::Resnet34(m) => (
                "fc.1.weight",
                m.fc.weight.val(),
                Some(("bn1", m.bn1.gamma.val(), m.bn1.beta.val(), m.bn1.running_var.value())),
            ),
        };
        assert_eq!(values(&st.tensor(head_name).unwrap()), flat(head.transpose()), "{kind}: {head_name}");
        if let Some((at, gamma, beta, var)) = bn {
            assert_eq!(values(&st.tensor(&format!("{at}.weight")).unwrap()), flat(gamma), "{kind}: {at}.weight");
            assert_eq!(values(&st.tensor(&format!("{at}.bias")).unwrap()), flat(beta), "{kind}: {at}.bias");
            assert_eq!(values(&st.tensor(&format!("{at}.running_var")).unwrap()), flat(var), "{kind}: running_var");
        }

        // model.json: what a PyTorch user needs, taken from the checkpoint.
        let m: ExportManifest =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
        assert_eq!((m.format.as_str(), m.format_version, m.architecture), ("pneumoscope-export", 1, kind));
        assert_eq!(
            (m.input.image_size, m.input.channels, m.input.mean, m.input.std),
            (48, 3, [0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
        );
        assert_eq!((m.threshold, m.dropout, m.tta), (0.37, 0.25, 1));
        assert_eq!(m.classes, ["NORMAL".to_string(), "PNEUMONIA".to_string()]);
        assert_eq!(m.weights, "model.safetensors");
    }
}

#[test]
fn an_ensemble_a_file_as_folder_and_a_missing_checkpoint_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let ckpt = dir.path().join("simple-best.ckpt");
    checkpoint::save(&ckpt, &meta_of(ModelKind::Simple), &Model::<B>::new(ModelKind::Simple, 0.25, &device)).unwrap();
    let manifest =
        pneumoscope::train::predictor::EnsembleManifest::new(vec!["simple-best.ckpt".into()], 0.5, "test".into());
    let ens = dir.path().join("ensemble.json");
    std::fs::write(&ens, serde_json::to_string(&manifest).unwrap()).unwrap();
    let o = run_in(dir.path(), &["export", "--checkpoint", ens.to_str().unwrap(), "--out", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is an ensemble"), "{}", text(&o));

    std::fs::write(dir.path().join("afile"), "x").unwrap();
    let o = run_in(dir.path(), &["export", "--checkpoint", ckpt.to_str().unwrap(), "--out", "afile"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("`--out`") && text(&o).contains("afile"), "{}", text(&o));

    let o = run_in(dir.path(), &["export", "--checkpoint", "nope.ckpt", "--out", "y"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nope.ckpt"), "{}", text(&o));
    assert!(!dir.path().join("y").exists(), "no folder for a failed export");
}
