//! The real-data guard: the real binary trains the regularized CNN briefly on the built-in subset of real Kaggle
//! training radiographs and must separate pneumonia from normal films on its validation split far better than
//! chance. A kernel, data-pipeline or recipe regression that still passes the unit tests fails here.
//!
//! The floor and its margin, from measured seeds (docs/evaluation.md, "Real-data guard"; 2026-12-04, this build's
//! defaults): this command's validation AUC over seeds 1–10 read 0.943–0.973 (mean 0.958, standard deviation
//! 0.010; seed 7, the one used here, 0.954). The floor, 0.90, is 0.04 below the worst seed (4 standard deviations)
//! and far above what a broken model reaches: 0.5 for chance, and a model that only learns the class mix also
//! scores 0.5. It takes about 20 s on 2 cores.

mod common;
use common::*;

/// The validation ROC-AUC floor (see the module comment for the measured seeds).
const VALIDATION_AUC_FLOOR: f64 = 0.90;

#[test]
fn regularized_cnn_learns_real_radiographs_well_above_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = run_in(
        tmp.path(),
        &["train", "--no-tui", "--models", "regularized", "--epochs", "3", "--image-size", "64", "--seed", "7"],
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // The built-in data is labelled as a small real subset, and its test split is held out from train/.
    assert!(log.contains("small REAL demo subset"), "{log}");
    assert!(log.contains("held out from train/ by patient"), "{log}");
    let run = std::fs::read_dir(tmp.path().join("runs")).unwrap().next().unwrap().unwrap().path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["info"]["source"], "real_subset");
    assert_eq!(report["test_source"]["kind"], "held_out");
    let model = &report["models"][0];
    assert_eq!(model["status"], "done", "{model}");
    let auc = model["evaluation"]["validation_auc"].as_f64().expect("a validation AUC");
    assert!(
        auc >= VALIDATION_AUC_FLOOR,
        "validation AUC {auc:.3} on real radiographs is below the floor {VALIDATION_AUC_FLOOR} \
         (took {:?}):\n{log}",
        started.elapsed()
    );
}
