//! After training: each model's best checkpoint tested — validation and test scored (through the test-time views
//! when `evaluation.tta` > 1), the operating point chosen on validation and written into the checkpoint, the
//! figures and paired differences added to the report — and the ensemble of the tested models evaluated.

use std::path::Path;
use std::sync::Arc;

use super::checkpoint::{self, CheckpointMeta};
use super::events::{CheckpointKind, EvalSplit, ModelStatus, TrainEvent};
use super::fit::{save_failed, Fit};
use super::infer::{evaluate, pneumonia_scores};
use super::journal::Emitter;
use super::predictor::{over_views, probability_loss};
use super::report::{ModelResult, RunReport};
use super::step::eval_spec;
use crate::config::Config;
use crate::data::loader::Dataset;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::ModelKind;
use pneumoscope_kernels::adam::AdamKernel;

/// Tests the best checkpoint of a model that completed an epoch and records it in `result` and `report`.
pub(crate) fn test_best<B: crate::model::Kernels + AdamKernel>(
    fit: &Fit<'_, B>,
    kind: ModelKind,
    index: usize,
    result: &mut ModelResult,
    report: &mut RunReport,
) {
    let Fit { setup, device, data, weights, emit, .. } = *fit;
    let cfg = &setup.config;
    let path = result.best_checkpoint.clone().unwrap_or_default();
    match checkpoint::load::<B>(&path, device) {
        Ok((meta, model)) => {
            let spec = eval_spec(cfg);
            // The operating point is chosen on the validation split, never on test (both seen through the
            // same test-time views when evaluation.tta > 1).
            let tta = cfg.evaluation.tta;
            let k = model.classes();
            let (val_scores, val_probs, m, scores, test_probs) = if tta <= 1 {
                let val = evaluate(&model, data.val.clone(), &spec, weights, 0.5, device);
                let test = evaluate(&model, data.test.clone(), &spec, weights, 0.5, device);
                (val.scores, val.probs, test.metrics, test.scores, test.probs)
            } else {
                // The class probabilities averaged over the views; P(pneumonia) from their mean.
                let probs = |ds: Arc<Dataset>| evaluate(&model, ds, &spec, weights, 0.5, device).probs;
                let val_probs = over_views(&data.val, tta, probs);
                let val_scores = pneumonia_scores(&val_probs, k);
                let test_probs = over_views(&data.test, tta, probs);
                let scores = pneumonia_scores(&test_probs, k);
                let loss = probability_loss(&scores, &report.test_truth);
                let m = Metrics::from_scores(&scores, &report.test_truth, loss, 0.5);
                (val_scores, val_probs, m, scores, test_probs)
            };
            let mut ev = crate::analysis::evaluate(
                (&val_scores, &data.val.truth()),
                (&scores, &report.test_truth, m.loss),
                crate::analysis::OperatingRule::of(&cfg.evaluation),
                cfg.evaluation.bootstrap_resamples,
                cfg.data.seed,
            );
            let three_class = k == 3 && report.test_targets.len() == data.test.len();
            if three_class {
                ev.add_three_class(
                    &test_probs,
                    &report.test_targets,
                    cfg.evaluation.bootstrap_resamples,
                    cfg.data.seed,
                );
            }
            // Saved in the checkpoint: eval, predict and the predict pane decide with it.
            let meta = CheckpointMeta { threshold: ev.threshold, tta, ..meta };
            if let Err(e) = checkpoint::rewrite_meta(&path, &meta) {
                emit.send(TrainEvent::Warning { message: save_failed(&e, false) });
                result.unsaved.push(format!(
                    "the operating point {:.2} could not be written into {}: eval and predict would use {:.2}",
                    ev.threshold,
                    path.display(),
                    meta_threshold_on_disk(&path)
                ));
            }
            result.test = Some(m);
            result.test_scores = scores;
            result.validation_scores = val_scores.clone();
            result.test_probs = if three_class { test_probs } else { Vec::new() };
            result.validation_probs = if three_class { val_probs } else { Vec::new() };
            result.evaluation = Some(ev.clone());
            emit.send(TrainEvent::Evaluated { model: kind, split: EvalSplit::Test, metrics: m });
            report.models[index] = result.clone();
            report.compare_models(cfg.evaluation.bootstrap_resamples, cfg.data.seed);
            let differences = report.differences.iter().filter(|d| d.a == kind || d.b == kind).cloned().collect();
            emit.send(TrainEvent::Analysed { model: kind, evaluation: Box::new(ev), differences });
        }
        Err(e) => emit.send(TrainEvent::Warning { message: format!("cannot test {kind}: {e}") }),
    }
    if result.status == ModelStatus::Done && !result.unsaved.is_empty() {
        result.status = ModelStatus::Failed;
        result.error = Some(result.unsaved.join("; "));
    }
}

/// The decision threshold a checkpoint on disk holds (0.5 when it cannot be read).
fn meta_threshold_on_disk(path: &Path) -> f32 {
    checkpoint::load_meta(path).map(|m| m.threshold).unwrap_or(0.5)
}

/// Evaluates the ensemble of the run's tested models (their mean P(pneumonia); operating point chosen on
/// validation like theirs), writes its manifest beside their checkpoints and adds it to the report as a fourth
/// row. Needs two or more tested models.
pub(crate) fn add_ensemble(report: &mut RunReport, cfg: &Config, run_dir: &Path, emit: &Emitter) -> Result<()> {
    let Some((result, manifest)) = super::ensemble::evaluate(report, cfg) else { return Ok(()) };
    let path = run_dir.join("checkpoints").join(super::predictor::ENSEMBLE_FILE);
    match checkpoint::write_atomic(&path, serde_json::to_string_pretty(&manifest)?.as_bytes()) {
        Ok(()) => emit.send(TrainEvent::CheckpointSaved {
            model: ModelKind::Ensemble,
            path: path.clone(),
            kind: CheckpointKind::Ensemble,
        }),
        Err(e) => emit.send(TrainEvent::Warning { message: format!("the ensemble is not saved: {e}") }),
    }
    let result = ModelResult { best_checkpoint: path.is_file().then_some(path), ..result };
    report.models.retain(|m| m.model != ModelKind::Ensemble);
    report.models.push(result.clone());
    report.compare_models(cfg.evaluation.bootstrap_resamples, cfg.data.seed);
    if let (Some(test), Some(ev)) = (result.test, result.evaluation.clone()) {
        emit.send(TrainEvent::Evaluated { model: ModelKind::Ensemble, split: EvalSplit::Test, metrics: test });
        let differences = report
            .differences
            .iter()
            .filter(|d| d.a == ModelKind::Ensemble || d.b == ModelKind::Ensemble)
            .cloned()
            .collect();
        emit.send(TrainEvent::Analysed { model: ModelKind::Ensemble, evaluation: Box::new(ev), differences });
    }
    emit.send(TrainEvent::ModelFinished {
        model: ModelKind::Ensemble,
        status: ModelStatus::Done,
        seconds: result.train_seconds,
        error: None,
    });
    super::report_files::write(report, run_dir)
}
