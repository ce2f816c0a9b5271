//! The three-class task end to end with the real binary on a tiny synthetic set (its PNEUMONIA files are named
//! personNNN_bacteria_M / personNNN_virus_M as in Kaggle): training with `data.task = "three-class"`, the 3 × 3
//! figures in report.json and report.md, three probabilities from `predict`, `eval` agreeing with the run, a
//! two-class checkpoint refused for a three-class evaluation, and PNEUMONIA files without a cause named.

mod common;
use common::*;

#[test]
fn a_three_class_run_reports_three_classes_and_its_checkpoints_predict_and_eval_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 24, 8);
    let config = tmp.path().join("three.toml");
    std::fs::write(&config, "[data]\ntask = \"three-class\"\n[training]\nclass_weights = \"balanced\"\n").unwrap();
    let out = run_in(
        tmp.path(),
        &[
            "train",
            "--no-tui",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--models",
            "simple,regularized",
            "--batch-size",
            "8",
        ],
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("BACTERIAL") && log.contains("VIRAL"), "the headless output shows the classes: {log}");
    let run = std::fs::read_dir(tmp.path().join("runs")).unwrap().next().unwrap().unwrap().path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["info"]["task"], "three-class");
    let test_n = report["test_truth"].as_array().unwrap().len() as u64;
    let c = &report["counts"]["test"];
    assert_eq!(c["bacterial"].as_u64().unwrap() + c["viral"].as_u64().unwrap(), c["pneumonia"].as_u64().unwrap());
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 3, "two models and their ensemble");
    for m in models {
        let three = &m["evaluation"]["three_class"];
        assert!(three.is_object(), "{} has no three-class figures", m["model"]);
        let cells: Vec<u64> = three["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
            .collect();
        assert_eq!(cells.len(), 9);
        assert_eq!(cells.iter().sum::<u64>(), test_n);
        // The 3 × 3 matrix collapses to the two-class one at the same operating point.
        let two = &m["evaluation"]["test_at_threshold"]["confusion"];
        assert_eq!(cells[0], two["tn"].as_u64().unwrap(), "{}", m["model"]);
        assert_eq!(cells[3] + cells[6], two["fn"].as_u64().unwrap(), "{}", m["model"]);
        assert_eq!(three["per_class"].as_array().unwrap().len(), 3);
        assert!(three["bacterial_vs_viral"]["films"].as_u64().unwrap() > 0);
    }
    // The ensemble's validation figures are three-class like its members': from its mean class probabilities.
    let targets: Vec<usize> =
        report["validation_targets"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let probs: Vec<f64> =
        models[2]["validation_probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 3 * targets.len());
    let right = probs
        .chunks(3)
        .zip(&targets)
        .filter(|(r, &t)| {
            let called = if r[1] + r[2] < 0.5 {
                0
            } else if r[2] > r[1] {
                2
            } else {
                1
            };
            called == t
        })
        .count();
    let acc = models[2]["best_val_accuracy"].as_f64().unwrap();
    assert!((acc - right as f64 / targets.len() as f64).abs() < 1e-9, "{acc}");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("## Three classes (test)") && md.contains("| true \\ called | NORMAL | BACTERIAL | VIRAL |"));
    assert!(md.contains("| split | NORMAL | BACTERIAL | VIRAL | total |"), "{md}");

    // The checkpoint records the task; predict gives three probabilities that add up.
    let ckpt = run.join("checkpoints/regularized-best.ckpt");
    let meta = pneumoscope::train::checkpoint::load_meta(&ckpt).unwrap();
    assert_eq!(meta.class_names, ["NORMAL", "BACTERIAL", "VIRAL"]);
    assert_eq!(meta.task(), pneumoscope::data::Task::ThreeClass);
    let test_dir = data.join("test");
    let out =
        run_in(tmp.path(), &["predict", "--checkpoint", ckpt.to_str().unwrap(), "--json", test_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, test_n);
    for l in &lines {
        let p = &l["probabilities"];
        let (n, b, v) = (p["NORMAL"].as_f64().unwrap(), p["BACTERIAL"].as_f64().unwrap(), p["VIRAL"].as_f64().unwrap());
        assert!((n + b + v - 1.0).abs() < 1e-4, "{l}");
        assert!((l["p_pneumonia"].as_f64().unwrap() - (b + v)).abs() < 1e-5, "{l}");
        let label = l["label"].as_str().unwrap();
        let expected = if b + v < l["threshold"].as_f64().unwrap() {
            "NORMAL"
        } else if v > b {
            "VIRAL"
        } else {
            "BACTERIAL"
        };
        assert_eq!(label, expected, "{l}");
    }
    let out = run_in(tmp.path(), &["predict", "--checkpoint", ckpt.to_str().unwrap(), test_dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("P(bacterial)="), "{}", text(&out));

    // eval: the checkpoint's own task by default, the same 3 × 3 matrix as the run's.
    let reg = models.iter().find(|m| m["model"] == "regularized").unwrap();
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["task"], "three-class");
    assert_eq!(ev["three_class"]["confusion"], reg["evaluation"]["three_class"]["confusion"]);
    let out = run_in(tmp.path(), &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let s = text(&out);
    assert!(out.status.success() && s.contains("bacterial vs viral") && s.contains("macro AUC"), "{s}");
    // The two-class question may be asked of a three-class model.
    let out = run_in(
        tmp.path(),
        &[
            "eval",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--task",
            "pneumonia",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ev["three_class"].is_null());
    assert_eq!(ev["metrics"]["confusion"], reg["evaluation"]["test_at_threshold"]["confusion"]);
    // The ensemble manifest works the same way.
    let ens = run.join("checkpoints/ensemble.json");
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", ens.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["three_class"]["confusion"], models[2]["evaluation"]["three_class"]["confusion"]);
}

#[test]
fn a_two_class_checkpoint_is_refused_for_three_classes_and_films_without_a_cause_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 40, 12, 3);
    let ckpt = tmp.path().join("simple.ckpt");
    let model = pneumoscope::model::Model::<pneumoscope::train::backend::Cpu>::new(
        pneumoscope::model::ModelKind::Simple,
        0.5,
        &Default::default(),
    );
    let meta = checkpoint_meta(pneumoscope::model::ModelKind::Simple);
    pneumoscope::train::checkpoint::save(&ckpt, &meta, &model).unwrap();
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--task", "three-class"],
    );
    let s = text(&out);
    assert!(!out.status.success() && out.status.code() != Some(101), "{s}");
    assert!(s.contains("two-class task") && s.contains("cannot tell BACTERIAL from VIRAL"), "{s}");
    assert!(s.contains(ckpt.to_str().unwrap()), "names the checkpoint: {s}");

    // A PNEUMONIA film whose name states no cause stops a three-class run before training, named.
    let pneumonia = data.join("train/PNEUMONIA");
    let first = std::fs::read_dir(&pneumonia).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let renamed = pneumonia.join("person9999_unknown_1.jpeg");
    std::fs::rename(&first, &renamed).unwrap();
    let out = run_in(
        tmp.path(),
        &[
            "train",
            "--no-tui",
            "--data",
            data.to_str().unwrap(),
            "--task",
            "three-class",
            "--epochs",
            "1",
            "--image-size",
            "32",
        ],
    );
    let s = text(&out);
    assert!(!out.status.success() && out.status.code() != Some(101), "{s}");
    assert!(s.contains("person9999_unknown_1.jpeg") && s.contains("three-class"), "{s}");
    // Three weights for three classes: two are refused, naming the key.
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[data]\ntask = \"three-class\"\n[training]\nclass_weights = [1.0, 2.0]\n").unwrap();
    let out = run_in(
        tmp.path(),
        &["train", "--no-tui", "--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("training.class_weights"), "{}", text(&out));
}
