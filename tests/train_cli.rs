//! End to end: the real binary trains headless on a tiny synthetic set, fills the run folder, and the
//! checkpoints it wrote work with `predict` and `eval`.

mod common;
use common::*;

#[test]
fn headless_training_fills_the_run_folder_and_checkpoints_predict_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 20, 4);
    let out = run_in(
        tmp.path(),
        &[
            "train",
            "--no-tui",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "2",
            "--image-size",
            "32",
            "--models",
            "simple,regularized,resnet34",
            "--batch-size",
            "8",
            "--runs-dir",
            "myruns",
        ],
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // Piped output: plain timestamped lines, per-epoch summaries and the final comparison table.
    assert!(log.lines().any(|l| l.len() > 20 && l.as_bytes()[4] == b'-' && l.contains("simple epoch 1:")), "{log}");
    assert!(log.contains("model") && log.contains("test acc") && log.contains("ResNet-34"), "{log}");
    assert!(log.contains("SYNTHETIC"), "{log}");

    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("myruns")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    for f in ["config.toml", "metrics.jsonl", "report.json", "report.md"] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    for m in ["simple", "regularized", "resnet34"] {
        for k in ["best", "last"] {
            assert!(run.join("checkpoints").join(format!("{m}-{k}.ckpt")).is_file(), "missing {m}-{k}.ckpt");
        }
    }
    // The saved config is the resolved one and loads again.
    let saved = pneumoscope::config::Config::load(&run.join("config.toml")).unwrap();
    assert_eq!(saved.data.image_size, 32);
    assert_eq!(saved.training.epochs, 2);

    // metrics.jsonl: batch windows, epochs and test evaluations, each with a timestamp.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |ev: &str| lines.iter().filter(|l| l["event"] == ev).count();
    assert!(count("batch_window") >= 6, "batch windows: {}", count("batch_window"));
    assert_eq!(count("epoch_ended"), 6);
    assert_eq!(count("evaluated"), 3);
    assert_eq!(count("finished"), 1);
    assert!(lines.iter().all(|l| l["time"].is_string()));

    // report.json: three models done, test metrics consistent with the confusion matrix.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for m in models {
        assert_eq!(m["status"], "done", "{m}");
        let c = &m["test"]["confusion"];
        let (tn, fp, fnn, tp) = (
            c["tn"].as_f64().unwrap(),
            c["fp"].as_f64().unwrap(),
            c["fn"].as_f64().unwrap(),
            c["tp"].as_f64().unwrap(),
        );
        assert_eq!(
            tn + fp + fnn + tp,
            report["counts"]["test"]["normal"].as_f64().unwrap()
                + report["counts"]["test"]["pneumonia"].as_f64().unwrap()
        );
        assert!((m["test"]["accuracy"].as_f64().unwrap() - (tn + tp) / (tn + fp + fnn + tp)).abs() < 1e-9);
    }
    assert_eq!(models[2]["params"], 21_285_698);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("SYNTHETIC")
            && md.contains("Simple CNN")
            && md.contains("Regularized CNN")
            && md.contains("sensitivity")
    );

    // predict: a folder with images and a junk file; one line per image, the junk reported, exit 1.
    let ckpt = run.join("checkpoints/regularized-best.ckpt");
    let test_dir = data.join("test");
    std::fs::write(test_dir.join("NORMAL").join("broken.jpeg"), b"not a jpeg").unwrap();
    let out =
        run_in(tmp.path(), &["predict", "--checkpoint", ckpt.to_str().unwrap(), "--json", test_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "one file failed: {}", text(&out));
    let preds: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 21);
    let broken: Vec<_> = preds.iter().filter(|p| p["error"].is_string()).collect();
    assert_eq!(broken.len(), 1);
    assert!(broken[0]["path"].as_str().unwrap().ends_with("broken.jpeg"));
    for p in preds.iter().filter(|p| p["label"].is_string()) {
        let pp = p["p_pneumonia"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pp));
        assert_eq!(p["label"] == "PNEUMONIA", pp >= 0.5);
    }
    std::fs::remove_file(test_dir.join("NORMAL").join("broken.jpeg")).unwrap();
    let one = std::fs::read_dir(test_dir.join("PNEUMONIA")).unwrap().next().unwrap().unwrap().path();
    let out = run_in(tmp.path(), &["predict", "--checkpoint", ckpt.to_str().unwrap(), one.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("P(pneumonia)="));

    // eval: the same figures as the training run's test evaluation of the best checkpoint.
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["metrics"]["confusion"], models[1]["test"]["confusion"]);
    assert_eq!(ev["synthetic_data"], true);

    // A checkpoint that is not one is refused by name.
    let bogus = tmp.path().join("bogus.ckpt");
    std::fs::write(&bogus, b"PK\x03\x04 zip?").unwrap();
    let out = run_in(tmp.path(), &["eval", "--checkpoint", bogus.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bogus.ckpt"), "{}", text(&out));
}
