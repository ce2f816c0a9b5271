//! `pneumoscope export`: a trained model out of the tool — `model.safetensors` with PyTorch's parameter names
//! (the architectures of scripts/bench_pytorch.py; BatchNorm running statistics included) and `model.json`, what
//! a PyTorch user needs to feed it: input size, channels, normalisation, classes, threshold. scripts/load_export.py
//! loads both into PyTorch and prints P(pneumonia) per image.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::error::{exit, ConfigError, Result};
use crate::model::{Init, ModelKind};
use crate::train::checkpoint::{self, CheckpointMeta};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A model's checkpoint written by `pneumoscope train` (runs/<run>/checkpoints/<model>-best.ckpt).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder that receives model.safetensors and model.json (created if missing; those two files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The file that travels beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ExportManifest {
    /// Always "pneumoscope-export".
    pub format: String,
    pub format_version: u32,
    pub architecture: ModelKind,
    /// The PyTorch module the weights load into.
    pub pytorch_module: String,
    pub weights: String,
    pub input: InputSpec,
    /// Output classes, in the order of the logits.
    pub classes: Vec<String>,
    pub output: String,
    /// P(pneumonia) at or above which pneumoscope calls an image PNEUMONIA (chosen on validation).
    pub threshold: f32,
    /// Test-time views pneumoscope averages (1: none; the PyTorch loader computes the single view).
    pub tta: usize,
    pub dropout: f64,
    pub init: Init,
    /// What the model was trained on (a user's folder, the built-in small real subset, SYNTHETIC pictures), and
    /// how it did on validation at its best epoch.
    pub data_source: crate::data::demo::DataSource,
    pub synthetic_data: bool,
    pub epoch: usize,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub checkpoint: PathBuf,
    pub pneumoscope_version: String,
    pub created: String,
}

/// How an image becomes the network's input.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct InputSpec {
    /// The input is `[N, 3, image_size, image_size]`, channels first.
    pub image_size: usize,
    pub channels: usize,
    pub steps: Vec<String>,
    /// Per channel, on [0, 1] values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ExportManifest {
    pub fn of(meta: &CheckpointMeta, checkpoint: &Path) -> Self {
        let pytorch_module = match meta.model {
            ModelKind::Simple => "simple_cnn() of scripts/bench_pytorch.py".to_string(),
            ModelKind::Regularized => format!("regularized_cnn(dropout={}) of scripts/bench_pytorch.py", meta.dropout),
            _ => format!(
                "torchvision.models.resnet34() with fc = Sequential(Dropout({}), Linear(512, 2)) (resnet34() of \
                 scripts/bench_pytorch.py)",
                meta.dropout
            ),
        };
        Self {
            format: "pneumoscope-export".into(),
            format_version: 1,
            architecture: meta.model,
            pytorch_module,
            weights: "model.safetensors".into(),
            input: InputSpec {
                image_size: meta.image_size,
                channels: 3,
                steps: vec![
                    "decode to 8-bit luminance (a colour file through its luma)".into(),
                    format!(
                        "resize the whole image to {0} x {0} (no crop, aspect not kept) with antialiased bilinear \
                         filtering (Pillow's Image.resize(..., BILINEAR))",
                        meta.image_size
                    ),
                    "divide by 255, repeat the one channel three times".into(),
                    "subtract mean and divide by std, per channel".into(),
                ],
                mean: meta.mean,
                std: meta.std,
            },
            classes: meta.class_names.clone(),
            output: "logits in the order of `classes`; P(pneumonia) = 1 - softmax(logits)[:, 0]; below the threshold \
                     NORMAL, else the likeliest of the other classes"
                .into(),
            threshold: meta.threshold,
            tta: meta.tta,
            dropout: meta.dropout,
            init: meta.init.clone(),
            data_source: meta.data_source,
            synthetic_data: meta.synthetic_data,
            epoch: meta.epoch,
            val_loss: meta.val_loss,
            val_accuracy: meta.val_accuracy,
            checkpoint: checkpoint.to_path_buf(),
            pneumoscope_version: meta.pneumoscope_version.clone(),
            created: meta.created.clone(),
        }
    }
}

pub fn run(a: &ExportArgs) -> Result<i32> {
    type Cpu = crate::train::backend::Cpu;
    if crate::train::predictor::EnsembleManifest::read(&a.checkpoint)?.is_some() {
        return Err(ConfigError::new(format!(
            "invalid value for `--checkpoint`: {} is an ensemble (the mean of its members' P(pneumonia)); export \
             each member's checkpoint, listed in it",
            a.checkpoint.display()
        ))
        .into());
    }
    if a.out.exists() && !a.out.is_dir() {
        return Err(ConfigError::new(format!(
            "invalid value for `--out`: {} is a file; give a folder for model.safetensors and model.json",
            a.out.display()
        ))
        .into());
    }
    let device = Default::default();
    let (meta, model) = checkpoint::load::<Cpu>(&a.checkpoint, &device)?;
    let header = [
        ("pneumoscope_architecture", meta.model.name().to_string()),
        ("pneumoscope_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let bytes = crate::model::export::safetensors_bytes(&model, &header)?;
    std::fs::create_dir_all(&a.out)
        .map_err(|e| ConfigError::new(format!("`--out`: cannot create folder {}: {e}", a.out.display())))?;
    let weights = a.out.join("model.safetensors");
    checkpoint::write_atomic(&weights, &bytes)?;
    let manifest = ExportManifest::of(&meta, &a.checkpoint);
    let json = a.out.join("model.json");
    checkpoint::write_atomic(&json, serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    outln!(
        "wrote {} ({} model, {:.1} MB, PyTorch names) and {}",
        weights.display(),
        meta.model,
        bytes.len() as f64 / 1e6,
        json.display()
    );
    if meta.synthetic_data {
        errln!("note: this checkpoint was trained on SYNTHETIC data");
    }
    Ok(exit::OK)
}
