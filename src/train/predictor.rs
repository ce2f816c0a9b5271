//! One predictor for `predict`, `eval` and the dashboard's predict pane: a trained checkpoint, or an ensemble
//! manifest (checkpoints/ensemble.json) whose members' P(pneumonia) are averaged; each decides at the operating
//! point chosen on validation. Must not depend on front-ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointMeta};
use super::infer::{class_probabilities, pneumonia_scores, to_tensors, Prediction};
use crate::data::augment::{apply_into, tta_views};
use crate::data::image::load_prepared;
use crate::data::loader::{batches, BatchSpec, Dataset};
use crate::data::Task;
use crate::error::Result;
use crate::model::{Kernels, Model, ModelKind};

/// The ensemble's manifest, written next to its members' checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleManifest {
    /// Always "pneumoscope-ensemble".
    pub kind: String,
    pub format: u32,
    /// The members' checkpoint files, relative to the manifest's folder.
    pub members: Vec<PathBuf>,
    /// P(pneumonia) (the members' mean) at or above which an image is called PNEUMONIA; chosen on validation.
    pub threshold: f32,
    /// How the threshold was chosen.
    pub rule: String,
    pub created: String,
}

pub const ENSEMBLE_KIND: &str = "pneumoscope-ensemble";
pub const ENSEMBLE_FILE: &str = "ensemble.json";

impl EnsembleManifest {
    pub fn new(members: Vec<PathBuf>, threshold: f32, rule: String) -> Self {
        Self {
            kind: ENSEMBLE_KIND.into(),
            format: 1,
            members,
            threshold,
            rule,
            created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// Reads a manifest (None when `path` is not one: a checkpoint, say).
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot open checkpoint {}", path.display()))?;
        if bytes.first() != Some(&b'{') {
            return Ok(None);
        }
        let m: EnsembleManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a pneumoscope ensemble manifest", path.display()))?;
        if m.kind != ENSEMBLE_KIND || m.format != 1 {
            bail!("{} is not a pneumoscope ensemble manifest (kind {:?}, format {})", path.display(), m.kind, m.format);
        }
        if m.members.is_empty() {
            bail!("ensemble manifest {} lists no members", path.display());
        }
        if !(m.threshold.is_finite() && (0.0..=1.0).contains(&m.threshold)) {
            bail!("ensemble manifest {} has an invalid threshold {}", path.display(), m.threshold);
        }
        Ok(Some(m))
    }
}

/// A checkpoint, or the mean of an ensemble's members, ready to classify.
pub struct Predictor<B: Backend> {
    /// `ModelKind::Ensemble` for an ensemble, else the checkpoint's model.
    pub kind: ModelKind,
    pub members: Vec<(CheckpointMeta, Model<B>)>,
    pub threshold: f32,
    pub path: PathBuf,
}

impl<B: Kernels> Predictor<B> {
    /// Loads a checkpoint or an ensemble manifest (its members must share image size and normalisation).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self> {
        let Some(manifest) = EnsembleManifest::read(path)? else {
            let (meta, model) = checkpoint::load::<B>(path, device)?;
            let threshold = meta.threshold;
            return Ok(Self { kind: meta.model, members: vec![(meta, model)], threshold, path: path.into() });
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut members = Vec::new();
        for m in &manifest.members {
            let member = dir.join(m);
            let loaded = checkpoint::load::<B>(&member, device)
                .with_context(|| format!("ensemble {}: member {}", path.display(), member.display()))?;
            if let Some((first, _)) = members.first() {
                let first: &CheckpointMeta = first;
                let meta = &loaded.0;
                if (meta.image_size, meta.mean, meta.std) != (first.image_size, first.mean, first.std) {
                    bail!(
                        "ensemble {}: member {} takes {} px images normalised differently from the first member",
                        path.display(),
                        member.display(),
                        meta.image_size
                    );
                }
                if meta.class_names != first.class_names {
                    bail!(
                        "ensemble {}: member {} was trained for the classes {} and the first member for {}",
                        path.display(),
                        member.display(),
                        meta.class_names.join(", "),
                        first.class_names.join(", ")
                    );
                }
            }
            members.push(loaded);
        }
        Ok(Self { kind: ModelKind::Ensemble, members, threshold: manifest.threshold, path: path.into() })
    }

    /// The first member's header: image size, normalisation and training data are the same for all.
    pub fn meta(&self) -> &CheckpointMeta {
        &self.members[0].0
    }

    /// The models' names, e.g. "regularized" or "ensemble (simple + regularized + resnet34)".
    pub fn describe(&self) -> String {
        if self.kind == ModelKind::Ensemble {
            let names: Vec<&str> = self.members.iter().map(|(m, _)| m.model.name()).collect();
            format!("ensemble ({})", names.join(" + "))
        } else {
            self.kind.name().to_string()
        }
    }

    /// The task the models were trained for (all members share it).
    pub fn task(&self) -> Task {
        self.meta().task()
    }

    /// The class names, in the order of the probabilities.
    pub fn class_names(&self) -> &[String] {
        &self.meta().class_names
    }

    /// Each image's class probabilities (row-major N × K): the members' mean.
    pub fn class_probabilities(&self, x: Tensor<B, 4>) -> Vec<f32> {
        let mut sum: Vec<f32> = Vec::new();
        for (_, model) in &self.members {
            let p = class_probabilities(model.forward(x.clone()));
            if sum.is_empty() {
                sum = p;
            } else {
                sum.iter_mut().zip(p).for_each(|(s, v)| *s += v);
            }
        }
        let n = self.members.len() as f32;
        if n > 1.0 {
            sum.iter_mut().for_each(|s| *s /= n);
        }
        sum
    }

    /// P(pneumonia) of each image of a batch tensor: from the members' mean class probabilities.
    pub fn probabilities(&self, x: Tensor<B, 4>) -> Vec<f32> {
        pneumonia_scores(&self.class_probabilities(x), self.task().classes())
    }

    /// Test-time augmentation views the checkpoint was evaluated with (1: the image alone).
    pub fn tta(&self) -> usize {
        self.meta().tta.max(1)
    }

    /// P(pneumonia) of every image of a dataset, in order (averaged over `tta` views), and the mean
    /// cross-entropy of those probabilities.
    pub fn scores(&self, ds: Arc<Dataset>, spec: &BatchSpec, tta: usize, device: &B::Device) -> (Vec<f32>, f64) {
        let (scores, _, loss) = self.scores_and_probabilities(ds, spec, tta, device);
        (scores, loss)
    }

    /// The same and each image's class probabilities (row-major N × K, averaged over the views).
    pub fn scores_and_probabilities(
        &self,
        ds: Arc<Dataset>,
        spec: &BatchSpec,
        tta: usize,
        device: &B::Device,
    ) -> (Vec<f32>, Vec<f32>, f64) {
        let probs = over_views(&ds, tta, |view| {
            let mut probs = Vec::with_capacity(view.len() * 3);
            for batch in batches(view, spec, 0) {
                let (x, _) = to_tensors::<B>(&batch, device);
                probs.extend(self.class_probabilities(x));
            }
            probs
        });
        let scores = pneumonia_scores(&probs, self.task().classes());
        let loss = probability_loss(&scores, &ds.truth());
        (scores, probs, loss)
    }

    /// Classifies image files; unreadable files give an error for that file only.
    pub fn predict_files(
        &self,
        paths: &[PathBuf],
        max_side: u32,
        device: &B::Device,
    ) -> Vec<std::result::Result<Prediction, (PathBuf, String)>> {
        let meta = self.meta();
        let s = meta.image_size;
        let plane = 3 * s * s;
        let mut out = Vec::with_capacity(paths.len());
        // Batches of 16 keep memory flat on large folders.
        for chunk in paths.chunks(16) {
            let mut images = Vec::new();
            let mut decoded = Vec::new();
            let mut prepared = Vec::new();
            for p in chunk {
                match load_prepared(p, s, max_side) {
                    Ok((img, _)) => {
                        prepared.push(img);
                        decoded.push(Ok(p.clone()));
                    }
                    Err(e) => decoded.push(Err((p.clone(), e.to_string()))),
                }
            }
            let n = prepared.len();
            let k = self.task().classes();
            let mut probs = vec![0.0f32; n * k];
            let views = tta_views(self.tta(), s);
            for view in &views {
                if n == 0 {
                    break;
                }
                images.clear();
                for img in &prepared {
                    let mut buf = vec![0.0; plane];
                    apply_into(img, view, meta.mean, meta.std, &mut buf);
                    images.extend(buf);
                }
                let x = Tensor::<B, 4>::from_data(TensorData::new(images.clone(), [n, 3, s, s]), device);
                for (acc, p) in probs.iter_mut().zip(self.class_probabilities(x)) {
                    *acc += p / views.len() as f32;
                }
            }
            let mut rows = probs.chunks(k);
            for d in decoded {
                out.push(d.map(|path| {
                    let row = rows.next().map(|r| r.to_vec()).unwrap_or_else(|| vec![f32::NAN; k]);
                    self.prediction(path, row)
                }));
            }
        }
        out
    }
}

impl<B: Backend> Predictor<B> {
    /// The decision for one image from its class probabilities: NORMAL below the operating point, else
    /// PNEUMONIA (two classes) or the likelier of BACTERIAL and VIRAL (three).
    pub fn prediction(&self, path: PathBuf, row: Vec<f32>) -> Prediction {
        let p: f32 = row[1..].iter().sum();
        let names = &self.members[0].0.class_names;
        let called = crate::analysis::three_class::decide(&row, self.threshold);
        let label = names.get(called).cloned().unwrap_or_else(|| "?".into());
        let class_probabilities =
            if row.len() > 2 { names.iter().cloned().zip(row.iter().copied()).collect() } else { Vec::new() };
        Prediction { path, label, p_pneumonia: p, threshold: self.threshold, class_probabilities }
    }
}

/// The mean over `tta` test-time views of the dataset (the dataset itself first; 1 = it alone) of `score`.
pub fn over_views(ds: &Arc<Dataset>, tta: usize, score: impl Fn(Arc<Dataset>) -> Vec<f32>) -> Vec<f32> {
    let size = ds.images.first().map(|i| i.size).unwrap_or(0);
    let views = tta_views(tta, size);
    let mut sum: Vec<f32> = Vec::new();
    for view in &views {
        let s = score(Arc::new(ds.viewed(view)));
        if sum.is_empty() {
            sum = s;
        } else {
            sum.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        }
    }
    if views.len() > 1 {
        sum.iter_mut().for_each(|a| *a /= views.len() as f32);
    }
    sum
}

/// Mean cross-entropy of predicted P(pneumonia) against the truth (probabilities clamped to [1e-7, 1 − 1e-7]).
pub fn probability_loss(scores: &[f32], truth: &[bool]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let sum: f64 = scores
        .iter()
        .zip(truth)
        .map(|(&p, &t)| {
            let p = (p as f64).clamp(1e-7, 1.0 - 1e-7);
            -(if t { p } else { 1.0 - p }).ln()
        })
        .sum();
    sum / scores.len() as f64
}

/// The members' mean P(pneumonia), image by image (all slices the same length).
pub fn mean_scores(members: &[&[f32]]) -> Vec<f32> {
    let n = members.first().map(|m| m.len()).unwrap_or(0);
    (0..n).map(|i| members.iter().map(|m| m[i]).sum::<f32>() / members.len() as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_scores_average_image_by_image() {
        assert_eq!(mean_scores(&[&[0.2, 0.9], &[0.4, 0.5]]), vec![0.3, 0.7]);
        assert!(mean_scores(&[]).is_empty());
    }

    #[test]
    fn probability_loss_is_the_cross_entropy_of_the_true_class() {
        let l = probability_loss(&[0.8, 0.3], &[true, false]);
        assert!((l - (-(0.8f64.ln()) - (0.7f64.ln())) / 2.0).abs() < 1e-6, "{l}");
        assert!(probability_loss(&[1.0], &[false]).is_finite(), "a certain mistake is clamped, not infinite");
    }

    #[test]
    fn a_manifest_is_recognised_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(ENSEMBLE_FILE);
        let m = EnsembleManifest::new(vec!["simple-best.ckpt".into()], 0.6, "youden".into());
        std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(EnsembleManifest::read(&p).unwrap(), Some(m.clone()));
        let ckpt = dir.path().join("x.ckpt");
        std::fs::write(&ckpt, b"PNEUMOSCOPE-CKPT\n").unwrap();
        assert_eq!(EnsembleManifest::read(&ckpt).unwrap(), None, "a checkpoint is not a manifest");
        let bad = EnsembleManifest { threshold: 7.5, ..m.clone() };
        std::fs::write(&p, serde_json::to_vec(&bad).unwrap()).unwrap();
        let err = EnsembleManifest::read(&p).unwrap_err().to_string();
        assert!(err.contains("invalid threshold"), "{err}");
        std::fs::write(&p, b"{\"kind\": 3}").unwrap();
        assert!(EnsembleManifest::read(&p).is_err());
    }
}
