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
    assert_eq!(count("evaluated"), 4, "three models and their ensemble");
    assert_eq!(count("finished"), 1);
    assert!(lines.iter().all(|l| l["time"].is_string()));

    // report.json: three models done, test metrics consistent with the confusion matrix.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 4, "three models and their ensemble");
    assert_eq!(models[3]["model"], "ensemble");
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
    // PNG plots (curves, ROC, confusion matrices) embedded in report.md.
    for (plot, min_w) in [("curves", 800), ("roc", 400), ("confusion", 900)] {
        let png = image::open(run.join(format!("plots/{plot}.png"))).unwrap_or_else(|e| panic!("{plot}.png: {e}"));
        assert!(png.width() >= min_w, "{plot}.png is {}×{}", png.width(), png.height());
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("![roc](plots/roc.png)") && md.contains("![curves](plots/curves.png)"), "{md}");
    assert!(md.contains("Operating points and 95 % confidence intervals"), "{md}");
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
    // The checkpoint carries the operating point chosen on validation, and predict decides with it.
    let threshold = models[1]["evaluation"]["threshold"].as_f64().unwrap();
    let meta = pneumoscope::train::checkpoint::load_meta(&ckpt).unwrap();
    assert_eq!(meta.threshold, threshold as f32);
    for p in preds.iter().filter(|p| p["label"].is_string()) {
        let pp = p["p_pneumonia"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pp));
        assert_eq!(p["label"] == "PNEUMONIA", pp as f32 >= threshold as f32, "{p} at threshold {threshold}");
    }
    std::fs::remove_file(test_dir.join("NORMAL").join("broken.jpeg")).unwrap();
    let one = std::fs::read_dir(test_dir.join("PNEUMONIA")).unwrap().next().unwrap().unwrap().path();
    let out = run_in(tmp.path(), &["predict", "--checkpoint", ckpt.to_str().unwrap(), one.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("P(pneumonia)="));

    // predict --heatmap: a Grad-CAM overlay per image, at the image's own size, in colour.
    let heat_dir = tmp.path().join("heat");
    for model in ["simple", "resnet34"] {
        let ck = run.join(format!("checkpoints/{model}-best.ckpt"));
        let args = ["predict", "--checkpoint", ck.to_str().unwrap(), "--heatmap", heat_dir.to_str().unwrap()];
        let out = run_in(tmp.path(), &[&args[..], &[one.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", text(&out));
        let png = heat_dir.join(format!("{}-gradcam.png", one.file_stem().unwrap().to_str().unwrap()));
        assert!(text(&out).contains("heatmap"), "{}", text(&out));
        let overlay = image::open(&png).unwrap().to_rgb8();
        let original = image::open(&one).unwrap();
        assert_eq!(overlay.dimensions(), (original.width(), original.height()), "{model}");
        assert!(overlay.pixels().any(|p| p[0] != p[1] || p[1] != p[2]), "{model}: the overlay has colour");
        std::fs::remove_file(&png).unwrap();
    }

    // eval: the same figures as the training run's test evaluation of the best checkpoint.
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // At the checkpoint's operating point, and at 0.5 as in training's test evaluation.
    assert_eq!(ev["metrics"]["confusion"], models[1]["evaluation"]["test_at_threshold"]["confusion"]);
    assert_eq!(ev["metrics_at_0_5"]["confusion"], models[1]["test"]["confusion"]);
    assert_eq!(ev["ci95"]["accuracy"], models[1]["evaluation"]["ci_at_threshold"]["accuracy"], "same seed, same CIs");
    assert_eq!(ev["synthetic_data"], true);

    // The ensemble: its manifest is a checkpoint for eval and predict, with the operating point chosen on
    // validation for the mean of the three models' P(pneumonia); eval gives the run's own figures for it.
    let manifest = run.join("checkpoints/ensemble.json");
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", manifest.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["model"], "ensemble");
    assert_eq!(ev["members"], serde_json::json!(["simple", "regularized", "resnet34"]));
    assert_eq!(ev["metrics"]["confusion"], models[3]["evaluation"]["test_at_threshold"]["confusion"]);
    let members: Vec<f64> = (0..3).map(|i| models[i]["test_scores"][0].as_f64().unwrap()).collect();
    let mean = members.iter().sum::<f64>() / 3.0;
    assert!((models[3]["test_scores"][0].as_f64().unwrap() - mean).abs() < 1e-6, "the ensemble is the mean");
    let out = run_in(tmp.path(), &["predict", "--checkpoint", manifest.to_str().unwrap(), one.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("P(pneumonia)="));
    let args = ["predict", "--checkpoint", manifest.to_str().unwrap(), "--heatmap", heat_dir.to_str().unwrap()];
    let out = run_in(tmp.path(), &[&args[..], &[one.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2), "Grad-CAM needs one network: {}", text(&out));

    // A checkpoint that is not one is refused by name.
    let bogus = tmp.path().join("bogus.ckpt");
    std::fs::write(&bogus, b"PK\x03\x04 zip?").unwrap();
    let out = run_in(tmp.path(), &["eval", "--checkpoint", bogus.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bogus.ckpt"), "{}", text(&out));
}

/// Validation losses of every epoch, in order, from a run folder's metrics.jsonl.
fn epoch_losses(run: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "epoch_ended")
        .map(|v| v["validation"]["loss"].as_f64().unwrap())
        .collect()
}

fn only_run(dir: &std::path::Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

#[test]
fn the_same_seed_gives_the_same_training_on_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 8);
    let train = |runs: &str, seed: &str| {
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
                "24",
                "--models",
                "regularized",
                "--seed",
                seed,
                "--runs-dir",
                runs,
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        epoch_losses(&only_run(&tmp.path().join(runs)))
    };
    let a = train("a", "7");
    let b = train("b", "7");
    let c = train("c", "8");
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "same seed, same data: identical validation losses");
    assert_ne!(a, c, "another seed: another split, initialisation and augmentation");
}

#[test]
fn ctrl_c_stops_after_the_batch_saves_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 9);
    let d = data.to_str().unwrap();
    let args =
        ["train", "--no-tui", "--data", d, "--epochs", "500", "--image-size", "24", "--models", "regularized,simple"];
    // Wait for the first finished epoch, then press Ctrl-C.
    let (code, lines, _) = train_until(tmp.path(), &args, "regularized epoch 1:", &[libc::SIGINT]);
    assert_eq!(code, 130, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("stopped; work saved in")), "{lines:?}");
    let run = only_run(&tmp.path().join("runs"));
    assert!(run.join("checkpoints/regularized-last.ckpt").is_file());
    assert!(run.join("checkpoints/regularized-best.ckpt").is_file());
    assert!(!run.join("checkpoints/simple-last.ckpt").exists(), "the queue stops: simple never starts");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["stopped"], true);
    assert_eq!(report["models"][0]["status"], "stopped");
    assert_eq!(report["models"][1]["status"], "queued");
    // The checkpoint it left evaluates.
    let ckpt = run.join("checkpoints/regularized-last.ckpt");
    let out = run_in(tmp.path(), &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

fn epochs_logged(run: &std::path::Path, model: &str) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "epoch_ended" && v["model"] == model)
        .map(|v| v["epoch"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 12);
    let d = data.to_str().unwrap();
    let args =
        ["train", "--no-tui", "--data", d, "--epochs", "5", "--image-size", "24", "--models", "regularized,simple"];
    // SIGKILL: no chance to save anything beyond the end-of-epoch checkpoints.
    let (code, _, _) = train_until(tmp.path(), &args, "regularized epoch 2:", &[libc::SIGKILL]);
    assert_eq!(code, -1, "killed by a signal");
    let run = only_run(&tmp.path().join("runs"));
    let before = epochs_logged(&run, "regularized");
    assert!(before.len() >= 2 && before.len() < 5, "{before:?}");
    let last = run.join("checkpoints/regularized-last.ckpt");
    let secs_before = pneumoscope::train::checkpoint::load_meta(&last).unwrap().train_state.unwrap().train_seconds;

    let out = run_in(tmp.path(), &["train", "--no-tui", "--resume", run.to_str().unwrap()]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let resumed_after = before.len();
    assert!(log.contains(&format!("regularized: resuming after epoch {resumed_after}")), "{log}");
    // Epochs continue where they stopped: none is trained twice, none is missing.
    assert_eq!(epochs_logged(&run, "regularized"), (1..=5).collect::<Vec<u64>>());
    assert_eq!(epochs_logged(&run, "simple"), (1..=5).collect::<Vec<u64>>());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["stopped"], false);
    for m in report["models"].as_array().unwrap() {
        assert_eq!(m["status"], "done", "{m}");
        assert_eq!(m["epochs_done"], 5);
        assert!(m["test"]["accuracy"].is_number());
    }
    // The reported training time includes the epochs trained before the kill.
    let secs = report["models"][0]["train_seconds"].as_f64().unwrap();
    assert!(secs > secs_before, "{secs} s reported, {secs_before} s trained before the kill");
    // The one-cycle schedule went on from its position: the last logged learning rate is the final, tiny one.
    let last_lr = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "batch_window" && v["model"] == "regularized")
        .and_then(|v| v["lr"].as_f64())
        .unwrap();
    assert!(last_lr < 1e-6, "schedule position restored: last lr {last_lr}");
}

#[test]
fn a_stopped_run_resumes_mid_epoch_and_the_queue_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 13);
    let d = data.to_str().unwrap();
    let args =
        ["train", "--no-tui", "--data", d, "--epochs", "3", "--image-size", "24", "--models", "regularized,simple"];
    let (code, _, _) = train_until(tmp.path(), &args, "regularized epoch 1:", &[libc::SIGINT]);
    assert_eq!(code, 130);
    let run = only_run(&tmp.path().join("runs"));
    let meta = pneumoscope::train::checkpoint::load_meta(&run.join("checkpoints/regularized-last.ckpt")).unwrap();
    assert!(meta.train_state.is_some(), "a stopped model's last checkpoint is resumable");

    // Settings cannot change on resume.
    let out = run_in(tmp.path(), &["train", "--no-tui", "--resume", run.to_str().unwrap(), "--epochs", "9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--epochs"), "{}", text(&out));
    let out = run_in(tmp.path(), &["train", "--no-tui", "--resume", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = run_in(tmp.path(), &["train", "--no-tui", "--resume", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["models"][0]["status"], "done");
    assert_eq!(report["models"][0]["epochs_done"], 3);
    assert_eq!(report["models"][1]["status"], "done");
    let e = epochs_logged(&run, "regularized");
    assert_eq!(*e.last().unwrap(), 3);
    assert!(e.windows(2).all(|w| w[1] == w[0] + 1), "no epoch twice: {e:?}");
    // Its checkpoints load and evaluate.
    let ckpt = run.join("checkpoints/regularized-best.ckpt");
    let out = run_in(tmp.path(), &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", d]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_leaves_loadable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 14);
    let d = data.to_str().unwrap();
    let args = ["train", "--no-tui", "--data", d, "--epochs", "500", "--image-size", "24", "--models", "resnet34"];
    let (code, lines, exit_after) = train_until(tmp.path(), &args, "resnet34 epoch 1:", &[libc::SIGINT, libc::SIGINT]);
    assert_eq!(code, 130, "{lines:?}");
    assert!(exit_after < std::time::Duration::from_secs(5), "the second Ctrl-C does not wait: {exit_after:?}");
    let run = only_run(&tmp.path().join("runs"));
    let ckpt = run.join("checkpoints/resnet34-best.ckpt");
    pneumoscope::train::checkpoint::load_meta(&ckpt).unwrap();
    let out = run_in(tmp.path(), &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
}

#[test]
fn a_folder_with_only_train_holds_out_a_test_split_by_patient_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 90, 4, 12);
    std::fs::remove_dir_all(data.join("test")).unwrap();
    // data split: the split a run uses, for other tools (scripts/train_pytorch.py).
    let split_json = tmp.path().join("split.json");
    let out = run_in(
        tmp.path(),
        &["data", "split", "--data", data.to_str().unwrap(), "--seed", "5", "--out", split_json.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let split: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&split_json).unwrap()).unwrap();
    assert_eq!(split["settings"]["test_source"]["kind"], "held_out");
    let n = |k: &str| split[k].as_array().unwrap().len();
    assert_eq!(n("train") + n("validation") + n("test"), 90);
    assert!(n("test") > 0 && n("validation") > 0);
    assert!(data.join(split["test"][0]["path"].as_str().unwrap()).is_file(), "paths are relative to the root");

    let out = run_in(
        tmp.path(),
        &[
            "train",
            "--no-tui",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--models",
            "regularized",
            "--seed",
            "5",
        ],
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("test images: held out from train/ by patient (15 %"), "{log}");
    assert!(!log.contains("NaN"), "{log}");
    let run = only_run(&tmp.path().join("runs"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["test_source"]["kind"], "held_out");
    // The test split is exactly the one `data split` wrote for the same seed.
    assert_eq!(
        report["counts"]["test"]["normal"].as_u64().unwrap() + report["counts"]["test"]["pneumonia"].as_u64().unwrap(),
        n("test") as u64
    );
    assert!(std::fs::read_to_string(run.join("report.md")).unwrap().contains("held out from train/ by patient"));
    // The operating point is chosen on validation as always (not left at 0.5 for want of a test/ folder).
    let m = &report["models"][0];
    let threshold = m["evaluation"]["threshold"].as_f64().unwrap();
    let ckpt = run.join("checkpoints/regularized-best.ckpt");
    assert_eq!(pneumoscope::train::checkpoint::load_meta(&ckpt).unwrap().threshold, threshold as f32);
    // eval rebuilds the same held-out split from the checkpoint (whatever ./config.toml says) and gets the run's
    // own figures.
    let out = run_in(
        tmp.path(),
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["test_source"]["kind"], "held_out");
    assert_eq!(ev["metrics"]["confusion"], m["evaluation"]["test_at_threshold"]["confusion"]);
}

#[test]
fn a_data_folder_that_does_not_exist_is_an_error_not_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", "no/such/folder", "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("`--data`") && text(&out).contains("no/such/folder"), "{}", text(&out));
    assert!(!tmp.path().join("runs").exists(), "no run folder for a run that never started");
}

#[test]
fn a_damaged_last_checkpoint_says_what_to_do_and_restarts_that_model_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 14);
    let d = data.to_str().unwrap();
    let args = ["train", "--no-tui", "--data", d, "--epochs", "3", "--image-size", "24", "--models", "regularized"];
    let (code, _, _) = train_until(tmp.path(), &args, "regularized epoch 1:", &[libc::SIGKILL]);
    assert_eq!(code, -1);
    let run = only_run(&tmp.path().join("runs"));
    let last = run.join("checkpoints/regularized-last.ckpt");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() - 1000]).unwrap();
    let r = run.to_str().unwrap();
    // Without consent: that model fails, naming the file and the flag, and nothing is overwritten.
    let out = run_in(tmp.path(), &["train", "--no-tui", "--resume", r]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("regularized-last.ckpt") && log.contains("--restart-damaged"), "{log}");
    assert_eq!(std::fs::read(&last).unwrap().len(), bytes.len() - 1000, "the damaged file is left as it was");
    // With it: the model trains again from scratch and the damaged file is kept aside.
    let out = run_in(tmp.path(), &["train", "--no-tui", "--resume", r, "--restart-damaged"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("training regularized again from scratch"), "{log}");
    assert!(run.join("checkpoints/regularized-last.ckpt.damaged").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["models"][0]["status"], "done");
    assert_eq!(report["models"][0]["epochs_done"], 3);
}
