//! The ensemble of a run's trained models as a result beside theirs: the mean of their P(pneumonia) on the
//! validation and test images, its operating point chosen on validation, its test figures with intervals.
//! Pure arithmetic over the report's scores; must not depend on front-ends.

use std::path::PathBuf;

use super::events::ModelStatus;
use super::predictor::{mean_scores, probability_loss, EnsembleManifest};
use super::report::{ModelResult, RunReport};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{Init, ModelKind};

/// The ensemble's result and manifest, from the models of `report` that finished and were tested on the same
/// validation and test images (None with fewer than two).
pub fn evaluate(report: &RunReport, cfg: &Config) -> Option<(ModelResult, EnsembleManifest)> {
    let members: Vec<&ModelResult> = report
        .models
        .iter()
        .filter(|m| {
            m.model.is_network()
                && m.status == ModelStatus::Done
                && m.best_checkpoint.is_some()
                && !m.test_scores.is_empty()
                && m.test_scores.len() == report.test_truth.len()
                && m.validation_scores.len() == report.validation_truth.len()
                && !m.validation_scores.is_empty()
        })
        .collect();
    if members.len() < 2 {
        return None;
    }
    let val = mean_scores(&members.iter().map(|m| m.validation_scores.as_slice()).collect::<Vec<_>>());
    let test = mean_scores(&members.iter().map(|m| m.test_scores.as_slice()).collect::<Vec<_>>());
    let val_loss = probability_loss(&val, &report.validation_truth);
    let test_loss = probability_loss(&test, &report.test_truth);
    let ev = crate::analysis::evaluate(
        (&val, &report.validation_truth),
        (&test, &report.test_truth, test_loss),
        crate::analysis::OperatingRule::of(&cfg.evaluation),
        cfg.evaluation.bootstrap_resamples,
        cfg.data.seed,
    );
    // The three-class task: the members' mean class probabilities, taken at the ensemble's operating point.
    let test_probs = if !report.test_targets.is_empty()
        && members.iter().all(|m| m.test_probs.len() == 3 * report.test_targets.len())
    {
        mean_scores(&members.iter().map(|m| m.test_probs.as_slice()).collect::<Vec<_>>())
    } else {
        Vec::new()
    };
    let val_probs = if !report.validation_targets.is_empty()
        && members.iter().all(|m| m.validation_probs.len() == 3 * report.validation_targets.len())
    {
        mean_scores(&members.iter().map(|m| m.validation_probs.as_slice()).collect::<Vec<_>>())
    } else {
        Vec::new()
    };
    // Validation loss and accuracy over the task's classes, as the members report theirs.
    let (val_loss, val_accuracy) = if val_probs.is_empty() {
        (val_loss, Metrics::from_scores(&val, &report.validation_truth, val_loss, 0.5).accuracy)
    } else {
        three_class_loss_and_accuracy(&val_probs, &report.validation_targets)
    };
    let mut ev = ev;
    if !test_probs.is_empty() {
        ev.add_three_class(&test_probs, &report.test_targets, cfg.evaluation.bootstrap_resamples, cfg.data.seed);
    }
    let files: Vec<PathBuf> = members
        .iter()
        .filter_map(|m| m.best_checkpoint.as_ref().and_then(|p| p.file_name()).map(PathBuf::from))
        .collect();
    let manifest = EnsembleManifest::new(files, ev.threshold, ev.rule.clone());
    let result = ModelResult {
        status: ModelStatus::Done,
        params: members.iter().map(|m| m.params).sum(),
        epochs_done: members.iter().map(|m| m.epochs_done).max().unwrap_or(0),
        best_val_loss: Some(val_loss),
        best_val_accuracy: Some(val_accuracy),
        test: Some(Metrics::from_scores(&test, &report.test_truth, test_loss, 0.5)),
        train_seconds: members.iter().map(|m| m.train_seconds).sum(),
        init: Init::Mean(members.iter().map(|m| m.model).collect()),
        evaluation: Some(ev),
        test_scores: test,
        validation_scores: val,
        test_probs,
        validation_probs: val_probs,
        ..ModelResult::new(ModelKind::Ensemble)
    };
    Some((result, manifest))
}

/// Mean cross-entropy of row-major N × 3 class probabilities against the true classes (clamped to
/// [1e-7, 1]), and the share called right at P(pneumonia) ≥ 0.5.
fn three_class_loss_and_accuracy(probs: &[f32], targets: &[usize]) -> (f64, f64) {
    let n = targets.len().max(1) as f64;
    let rows = probs.chunks(3).zip(targets);
    let loss = rows.clone().map(|(r, &t)| -(r[t] as f64).clamp(1e-7, 1.0).ln()).sum::<f64>() / n;
    let right = rows.filter(|(r, &t)| crate::analysis::three_class::decide(r, 0.5) == t).count();
    (loss, right as f64 / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::events::RunInfo;

    fn member(kind: ModelKind, val: Vec<f32>, test: Vec<f32>) -> ModelResult {
        ModelResult {
            status: ModelStatus::Done,
            best_checkpoint: Some(PathBuf::from(format!("runs/x/checkpoints/{kind}-best.ckpt"))),
            validation_scores: val,
            test_scores: test,
            params: 10,
            train_seconds: 5.0,
            ..ModelResult::new(kind)
        }
    }

    fn report(models: Vec<ModelResult>) -> RunReport {
        RunReport {
            info: RunInfo {
                run_dir: "runs/x".into(),
                data_root: "d".into(),
                source: Default::default(),
                models: vec![],
                device: "cpu".into(),
                image_size: 64,
                batch_size: 16,
                epochs: 1,
                threads: 2,
                task: Default::default(),
            },
            counts: Default::default(),
            test_source: Default::default(),
            skipped_files: 0,
            models,
            stopped: false,
            test_truth: vec![false, false, true, true],
            validation_truth: vec![false, true, true],
            test_targets: vec![],
            validation_targets: vec![],
            differences: vec![],
        }
    }

    #[test]
    fn the_ensemble_averages_its_members_and_decides_on_validation() {
        // Each member errs on a different test image; their mean gets all four right.
        let a = member(ModelKind::Simple, vec![0.1, 0.7, 0.9], vec![0.6, 0.1, 0.9, 0.8]);
        let b = member(ModelKind::Regularized, vec![0.3, 0.9, 0.6], vec![0.1, 0.2, 0.9, 0.3]);
        let (r, manifest) = evaluate(&report(vec![a, b]), &Config::default()).unwrap();
        assert_eq!(r.model, ModelKind::Ensemble);
        let close = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&r.test_scores, &[0.35, 0.15, 0.9, 0.55]), "{:?}", r.test_scores);
        assert!(close(&r.validation_scores, &[0.2, 0.8, 0.75]), "{:?}", r.validation_scores);
        // Youden on validation: any threshold in (0.2, 0.75] separates it; the midpoint is used.
        let e = r.evaluation.as_ref().unwrap();
        assert!((e.threshold - 0.475).abs() < 1e-6, "{}", e.threshold);
        assert_eq!(e.test_at_threshold.accuracy, 1.0);
        assert_eq!(manifest.members, vec![PathBuf::from("simple-best.ckpt"), PathBuf::from("regularized-best.ckpt")]);
        assert_eq!(manifest.threshold, e.threshold);
        assert_eq!((r.params, r.train_seconds), (20, 10.0));
        assert_eq!(r.init.to_string(), "mean of simple + regularized");
    }

    #[test]
    fn no_ensemble_without_two_tested_models() {
        let a = member(ModelKind::Simple, vec![0.1, 0.7, 0.9], vec![0.6, 0.1, 0.9, 0.8]);
        let failed = ModelResult { status: ModelStatus::Failed, ..member(ModelKind::Resnet34, vec![], vec![]) };
        assert!(evaluate(&report(vec![a.clone(), failed]), &Config::default()).is_none());
        // Scores from another test split (other length) do not mix.
        let other = member(ModelKind::Regularized, vec![0.1, 0.7, 0.9], vec![0.6, 0.1]);
        assert!(evaluate(&report(vec![a, other]), &Config::default()).is_none());
    }
}
