//! Forward passes outside the training loop: batches to tensors, the weighted cross-entropy, P(pneumonia)
//! per image, evaluation over a dataset, and prediction of image files from a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::loader::{batches, Batch, BatchSpec, Dataset};
use crate::metrics::Metrics;
use crate::model::Model;

/// Moves a host batch to the device.
pub fn to_tensors<B: Backend>(batch: &Batch, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let n = batch.len();
    let s = batch.image_size;
    let x = Tensor::<B, 4>::from_data(TensorData::new(batch.images.clone(), [n, 3, s, s]), device);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), device);
    (x, y)
}

/// Mean cross-entropy of logits against targets, weighted per class as PyTorch's
/// `CrossEntropyLoss(weight=…)`: Σ w_y·(−log p_y) / Σ w_y.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>, weights: [f32; 2]) -> Tensor<B, 1> {
    let device = logits.device();
    let n = targets.dims()[0];
    let logp = log_softmax(logits, 1);
    let picked = logp.gather(1, targets.clone().reshape([n, 1])).reshape([n]);
    if weights == [1.0, 1.0] {
        return picked.mean().neg();
    }
    let w = Tensor::<B, 1>::from_floats(weights, &device).gather(0, targets);
    (picked * w.clone()).sum().neg() / w.sum()
}

/// The training loss: class weights and label smoothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSpec {
    pub weights: [f32; 2],
    /// Label smoothing ε: the target puts 1 − ε on the true class and ε/2 on each class (0: none).
    pub smoothing: f32,
}

impl From<[f32; 2]> for LossSpec {
    fn from(weights: [f32; 2]) -> Self {
        Self { weights, smoothing: 0.0 }
    }
}

/// Cross-entropy with label smoothing, as PyTorch's `CrossEntropyLoss(weight=w, label_smoothing=ε)`:
/// Σᵢ [w_yᵢ·(1 − ε)·(−log p_yᵢ) + (ε/2)·Σ_k w_k·(−log p_k)] / Σᵢ w_yᵢ. With ε = 0 it is [`cross_entropy`].
pub fn smoothed_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    loss: LossSpec,
) -> Tensor<B, 1> {
    if loss.smoothing == 0.0 {
        return cross_entropy(logits, targets, loss.weights);
    }
    let device = logits.device();
    let n = targets.dims()[0];
    let logp = log_softmax(logits, 1);
    let w = Tensor::<B, 1>::from_floats(loss.weights, &device);
    let picked = logp.clone().gather(1, targets.clone().reshape([n, 1])).reshape([n]);
    let w_y = w.clone().gather(0, targets);
    // Σ_k w_k·log p_k per image.
    let spread = (logp * w.reshape([1, 2])).sum_dim(1).reshape([n]);
    let eps = loss.smoothing;
    let per_image = (picked * w_y.clone()).mul_scalar(1.0 - eps) + spread.mul_scalar(eps / 2.0);
    per_image.sum().neg() / w_y.sum()
}

/// P(pneumonia) for each image of a batch tensor.
pub fn probabilities<B: Backend>(logits: Tensor<B, 2>) -> Vec<f32> {
    let n = logits.dims()[0];
    let p = softmax(logits, 1).slice([0..n, 1..2]).reshape([n]);
    p.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}

/// Evaluates a model (in inference mode) over a whole dataset: metrics at `threshold` and the scores.
pub fn evaluate<B: crate::model::Kernels>(
    model: &Model<B>,
    ds: Arc<Dataset>,
    spec: &BatchSpec,
    weights: [f32; 2],
    threshold: f32,
    device: &B::Device,
) -> (Metrics, Vec<f32>) {
    let mut scores = Vec::with_capacity(ds.len());
    let mut truth = Vec::with_capacity(ds.len());
    let mut loss_sum = 0.0;
    let mut count = 0usize;
    for batch in batches(ds.clone(), spec, 0) {
        let (x, y) = to_tensors::<B>(&batch, device);
        let logits = model.forward(x);
        let loss: f64 = cross_entropy(logits.clone(), y, weights).into_scalar().elem_f64();
        loss_sum += loss * batch.len() as f64;
        count += batch.len();
        scores.extend(probabilities(logits));
        truth.extend(batch.labels.iter().map(|&l| l == 1));
    }
    let loss = if count > 0 { loss_sum / count as f64 } else { 0.0 };
    (Metrics::from_scores(&scores, &truth, loss, threshold), scores)
}

/// Small helper: scalar of any float element type as f64.
pub trait ElemF64 {
    fn elem_f64(self) -> f64;
}
impl<E: burn::tensor::ElementConversion> ElemF64 for E {
    fn elem_f64(self) -> f64 {
        self.elem::<f64>()
    }
}

/// The prediction for one image file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub label: String,
    pub p_pneumonia: f32,
    pub threshold: f32,
}

/// Expands files and folders into the list of image files (folders: their images, sorted; recursive). Each
/// file is listed once, however many ways it is reached (symlinked folders, loops, an input given twice).
pub fn collect_images(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    fn walk(
        dir: &Path,
        depth: usize,
        seen: &mut std::collections::HashSet<PathBuf>,
        files: &mut Vec<PathBuf>,
        problems: &mut Vec<(PathBuf, String)>,
    ) {
        // A folder reached again (a symlink to itself or an ancestor) is walked once.
        if !seen.insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())) {
            return;
        }
        if depth > 32 {
            problems.push((dir.to_path_buf(), "folder nesting deeper than 32 levels".into()));
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                problems.push((dir.to_path_buf(), format!("cannot list folder: {e}")));
                return;
            }
        };
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, depth + 1, seen, files, problems);
            } else if crate::data::layout::has_image_extension(&p) {
                if seen.insert(std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone())) {
                    files.push(p);
                }
            } else if !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                problems.push((p, "skipped: not an image file extension (.jpeg, .jpg, .png, .dcm)".into()));
            }
        }
    }
    for input in inputs {
        if input.is_dir() {
            walk(input, 0, &mut seen, &mut files, &mut problems);
        } else if input.exists() {
            if seen.insert(std::fs::canonicalize(input).unwrap_or_else(|_| input.clone())) {
                files.push(input.clone());
            }
        } else {
            problems.push((input.clone(), "no such file or folder".into()));
        }
    }
    (files, problems)
}
