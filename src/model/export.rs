//! A model's weights as PyTorch names them: a safetensors file that `load_state_dict` takes for the PyTorch
//! definitions of the three architectures (scripts/bench_pytorch.py: `simple_cnn()`, `regularized_cnn()`,
//! torchvision's `resnet34()` with `fc = Sequential(Dropout, Linear(512, 2))`), written through burn-store.
//!
//! burn-store's `BurnToPyTorchAdapter` turns BatchNorm `gamma`/`beta` into `weight`/`bias` and transposes Linear
//! weights (burn keeps them `[in, out]`, PyTorch `[out, in]`); the names are then mapped to PyTorch's: the CNNs
//! are `nn.Sequential`s (a layer's name is its index), ResNet-34's `downsample.{conv,bn}` are torchvision's
//! `downsample.{0,1}` and its head is `fc.1`. BatchNorm running statistics are included; PyTorch's
//! `num_batches_tracked` counters are not (they do not change what the model computes).

use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};

use super::{regularized_cnn, simple_cnn, Model, ModelKind};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the {model} weights as safetensors: {message}")]
pub struct ExportError {
    pub model: ModelKind,
    pub message: String,
}

/// Our tensor names → PyTorch's, as (regular expression, replacement) pairs applied after the adapter.
pub fn pytorch_names(kind: ModelKind) -> Vec<(String, String)> {
    // An nn.Sequential of per-layer [conv, (bn,) relu, (pool)]: layer i's conv sits at the index after the
    // modules of the layers before it; then AdaptiveAvgPool2d, Flatten and the head.
    let sequential = |per_layer: usize, pools: &[bool]| {
        let mut at = Vec::with_capacity(pools.len());
        let mut i = 0;
        for &pool in pools {
            at.push(i);
            i += per_layer + pool as usize;
        }
        (at, i + 2) // + AdaptiveAvgPool2d + Flatten
    };
    match kind {
        ModelKind::Simple => {
            let (at, head) = sequential(2, &simple_cnn::POOL_AFTER);
            let mut m: Vec<_> =
                at.iter().enumerate().map(|(i, j)| (format!(r"^convs\.{i}\."), format!("{j}."))).collect();
            m.push((r"^fc\.".into(), format!("{head}.")));
            m
        }
        ModelKind::Regularized => {
            let (at, head) = sequential(3, &regularized_cnn::POOL_AFTER);
            let mut m = Vec::new();
            for (i, j) in at.iter().enumerate() {
                m.push((format!(r"^blocks\.{i}\.conv\."), format!("{j}.")));
                m.push((format!(r"^blocks\.{i}\.bn\."), format!("{}.", j + 1)));
            }
            // Head: Dropout, Linear(·, 128), ReLU, Dropout, Linear(128, 2).
            m.push((r"^fc1\.".into(), format!("{}.", head + 1)));
            m.push((r"^fc2\.".into(), format!("{}.", head + 4)));
            m
        }
        ModelKind::Resnet34 => vec![
            (r"\.downsample\.conv\.".into(), ".downsample.0.".into()),
            (r"\.downsample\.bn\.".into(), ".downsample.1.".into()),
            (r"^fc\.".into(), "fc.1.".into()),
        ],
        ModelKind::Ensemble => Vec::new(),
    }
}

/// The model's weights as a safetensors file with PyTorch's names; `metadata` goes into its header.
pub fn safetensors_bytes<B: Backend>(model: &Model<B>, metadata: &[(&str, String)]) -> Result<Vec<u8>, ExportError> {
    let kind = model.kind();
    let fail = |message: String| ExportError { model: kind, message };
    let patterns = pytorch_names(kind);
    let remapper = KeyRemapper::from_patterns(patterns.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect())
        .map_err(|e| fail(e.to_string()))?;
    // No burn-specific header fields: the file is PyTorch's ("format": "pt", as safetensors' own convention).
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .metadata("format", "pt")
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper);
    for (k, v) in metadata {
        store = store.metadata(*k, v.clone());
    }
    let saved = match model {
        Model::Simple(m) => m.save_into(&mut store),
        Model::Regularized(m) => m.save_into(&mut store),
        Model::Resnet34(m) => m.save_into(&mut store),
    };
    saved.map_err(|e| fail(e.to_string()))?;
    store.get_bytes().map_err(|e| fail(e.to_string()))
}
