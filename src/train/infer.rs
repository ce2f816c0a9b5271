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
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>, weights: &[f32]) -> Tensor<B, 1> {
    let device = logits.device();
    let n = targets.dims()[0];
    let logp = log_softmax(logits, 1);
    let picked = logp.gather(1, targets.clone().reshape([n, 1])).reshape([n]);
    if weights.iter().all(|&w| w == 1.0) {
        return picked.mean().neg();
    }
    let w = Tensor::<B, 1>::from_floats(weights, &device).gather(0, targets);
    (picked * w.clone()).sum().neg() / w.sum()
}

/// The training loss: class weights (one per class) and label smoothing.
#[derive(Debug, Clone, PartialEq)]
pub struct LossSpec {
    pub weights: Vec<f32>,
    /// Label smoothing ε: the target puts 1 − ε on the true class and ε/K on each of the K classes (0: none).
    pub smoothing: f32,
}

impl<const K: usize> From<[f32; K]> for LossSpec {
    fn from(weights: [f32; K]) -> Self {
        Self { weights: weights.to_vec(), smoothing: 0.0 }
    }
}

/// Cross-entropy with label smoothing, as PyTorch's `CrossEntropyLoss(weight=w, label_smoothing=ε)`:
/// Σᵢ [w_yᵢ·(1 − ε)·(−log p_yᵢ) + (ε/K)·Σ_k w_k·(−log p_k)] / Σᵢ w_yᵢ. With ε = 0 it is [`cross_entropy`].
pub fn smoothed_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    loss: LossSpec,
) -> Tensor<B, 1> {
    if loss.smoothing == 0.0 {
        return cross_entropy(logits, targets, &loss.weights);
    }
    let device = logits.device();
    let [n, k] = logits.dims();
    let logp = log_softmax(logits, 1);
    let w = Tensor::<B, 1>::from_floats(&loss.weights[..], &device);
    let picked = logp.clone().gather(1, targets.clone().reshape([n, 1])).reshape([n]);
    let w_y = w.clone().gather(0, targets);
    // Σ_k w_k·log p_k per image.
    let spread = (logp * w.reshape([1, k])).sum_dim(1).reshape([n]);
    let eps = loss.smoothing;
    let per_image = (picked * w_y.clone()).mul_scalar(1.0 - eps) + spread.mul_scalar(eps / k as f32);
    per_image.sum().neg() / w_y.sum()
}

/// Each image's class probabilities (row-major N×K, K = the head's outputs).
pub fn class_probabilities<B: Backend>(logits: Tensor<B, 2>) -> Vec<f32> {
    softmax(logits, 1).into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}

/// P(pneumonia) of each row of N×K class probabilities: P(PNEUMONIA) with two classes, 1 − P(NORMAL) (the sum
/// of BACTERIAL and VIRAL) with three.
pub fn pneumonia_scores(probs: &[f32], k: usize) -> Vec<f32> {
    probs.chunks(k.max(1)).map(|row| row[1..].iter().sum()).collect()
}

/// P(pneumonia) for each image of a batch tensor.
pub fn probabilities<B: Backend>(logits: Tensor<B, 2>) -> Vec<f32> {
    let k = logits.dims()[1];
    pneumonia_scores(&class_probabilities(logits), k)
}

/// A model's scores over a dataset: P(pneumonia) per image, the class probabilities (N×K) and the mean loss.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    pub metrics: Metrics,
    pub scores: Vec<f32>,
    /// Row-major N×`classes`.
    pub probs: Vec<f32>,
    pub classes: usize,
}

/// Evaluates a model (in inference mode) over a whole dataset: metrics at `threshold` (PNEUMONIA vs NORMAL),
/// the scores and the class probabilities.
pub fn evaluate<B: crate::model::Kernels>(
    model: &Model<B>,
    ds: Arc<Dataset>,
    spec: &BatchSpec,
    weights: &[f32],
    threshold: f32,
    device: &B::Device,
) -> Scored {
    let mut probs = Vec::with_capacity(ds.len() * 3);
    let mut classes = model.classes();
    let mut loss_sum = 0.0;
    let mut count = 0usize;
    for batch in batches(ds.clone(), spec, 0) {
        let (x, y) = to_tensors::<B>(&batch, device);
        let logits = model.forward(x);
        classes = logits.dims()[1];
        let loss: f64 = cross_entropy(logits.clone(), y, weights).into_scalar().elem_f64();
        loss_sum += loss * batch.len() as f64;
        count += batch.len();
        probs.extend(class_probabilities(logits));
    }
    let loss = if count > 0 { loss_sum / count as f64 } else { 0.0 };
    let scores = pneumonia_scores(&probs, classes);
    let truth = ds.truth();
    let mut metrics = Metrics::from_scores(&scores, &truth, loss, threshold);
    if classes > 2 {
        let right = probs
            .chunks(classes)
            .zip(ds.targets(spec.task))
            .filter(|(row, t)| crate::analysis::three_class::decide(row, threshold) == *t)
            .count();
        metrics.class_accuracy = Some(right as f64 / ds.len().max(1) as f64);
    }
    Scored { metrics, scores, probs, classes }
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
    /// The class called: NORMAL or PNEUMONIA, or NORMAL / BACTERIAL / VIRAL for a three-class model.
    pub label: String,
    pub p_pneumonia: f32,
    pub threshold: f32,
    /// A three-class model's probability of each class (empty for a two-class model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_probabilities: Vec<(String, f32)>,
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
