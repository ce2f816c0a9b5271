//! Failures nobody can provoke from outside, forced through failpoints (PNEUMOSCOPE_FAILPOINTS): a diverging
//! loss, a failing disk, a panicking pane; and inputs that must be refused by name.

mod common;
use common::*;

fn run_env(dir: &std::path::Path, failpoints: &str, args: &[&str]) -> std::process::Output {
    run_in_env(dir, &[("PNEUMOSCOPE_FAILPOINTS", failpoints)], args)
}

fn report(dir: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
    let run = std::fs::read_dir(dir.join("runs")).unwrap().next().unwrap().unwrap().path();
    let r = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    (run, r)
}

#[test]
fn a_diverging_model_stops_with_a_clear_message_and_the_queue_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 21);
    // 3 steps per epoch: step 5 is in epoch 2, after epoch 1's checkpoints.
    let out = run_env(
        tmp.path(),
        "nan-loss@regularized:5",
        &[
            "train",
            "--no-tui",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "3",
            "--image-size",
            "24",
            "--models",
            "regularized,simple",
        ],
    );
    let log = text(&out);
    assert!(out.status.success(), "one model failing is not a failed run: {log}");
    assert!(log.contains("loss became NaN") && log.contains("max-lr"), "{log}");
    let (run, r) = report(tmp.path());
    assert_eq!(r["models"][0]["status"], "failed");
    assert!(r["models"][0]["error"].as_str().unwrap().contains("NaN"));
    assert_eq!(r["models"][0]["epochs_done"], 1, "the last good epoch");
    assert!(r["models"][0]["test"]["accuracy"].is_number(), "its last good checkpoint is still tested");
    assert_eq!(r["models"][1]["status"], "done");
    let ckpt = run.join("checkpoints/regularized-best.ckpt");
    let out = run_in(tmp.path(), &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_failing_disk_is_reported_training_goes_on_and_the_run_does_not_claim_what_it_could_not_save() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 22);
    let out = run_env(
        tmp.path(),
        "write:regularized-best",
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
        ],
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "what was not saved is not a success: {log}");
    assert!(log.contains("regularized-best.ckpt") && log.contains("no space left"), "{log}");
    assert!(log.contains("training goes on"), "{log}");
    assert!(log.contains("not everything could be saved"), "{log}");
    // The last epoch's failure promises no retry that will never come.
    let last_warning = log.lines().rfind(|l| l.contains("no space left")).unwrap();
    assert!(!last_warning.contains("retried"), "{last_warning}");
    let (run, r) = report(tmp.path());
    assert_eq!(r["models"][0]["status"], "failed");
    assert!(r["models"][0]["best_epoch"].is_null(), "no best checkpoint on disk, none described");
    assert!(r["models"][0]["evaluation"].is_null());
    assert_eq!(r["models"][0]["epochs_done"], 2, "both epochs trained despite the failed saves");
    assert!(run.join("checkpoints/regularized-last.ckpt").is_file(), "other files are still written");
    assert!(!run.join("checkpoints/regularized-best.ckpt").exists());
    let leftovers: Vec<_> =
        std::fs::read_dir(run.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().contains(".tmp")), "{leftovers:?}");
}

#[test]
fn a_disk_that_fills_after_the_first_epoch_leaves_a_report_of_the_checkpoint_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 24);
    // The first best checkpoint is written; every later one fails.
    let out = run_env(
        tmp.path(),
        "write:regularized-best#2",
        &[
            "train",
            "--no-tui",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "3",
            "--image-size",
            "24",
            "--models",
            "regularized",
            "--max-lr",
            "0.003",
        ],
    );
    let log = text(&out);
    let (run, r) = report(tmp.path());
    let on_disk = pneumoscope::train::checkpoint::load_meta(&run.join("checkpoints/regularized-best.ckpt")).unwrap();
    let m = &r["models"][0];
    // Whatever the later epochs did, the report's best is the checkpoint that exists, with its threshold.
    assert_eq!(m["best_epoch"].as_u64(), Some(on_disk.epoch as u64), "{log}");
    assert_eq!(m["best_val_loss"].as_f64(), on_disk.val_loss, "{log}");
    let saved_later = log.contains("epoch 2:") && m["unsaved"].as_array().is_some_and(|u| !u.is_empty());
    if saved_later {
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert_eq!(m["status"], "failed");
    }
    // The operating point could not be written either (the header rewrite is a write too): said, not claimed.
    let threshold = m["evaluation"]["threshold"].as_f64();
    if threshold.is_some_and(|t| t as f32 != on_disk.threshold) {
        let unsaved = m["unsaved"].to_string();
        assert!(unsaved.contains("operating point"), "{unsaved}");
        assert_eq!(out.status.code(), Some(1), "{log}");
    }
}

#[test]
fn a_checkpoint_whose_header_lies_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 23);
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
            "24",
            "--models",
            "simple",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (run, _) = report(tmp.path());
    // Rewrite the header (with a valid checksum) to claim another architecture: the weights no longer fit.
    let path = tmp.path().join("forged.ckpt");
    std::fs::copy(run.join("checkpoints/simple-best.ckpt"), &path).unwrap();
    let meta = pneumoscope::train::checkpoint::load_meta(&path).unwrap();
    let forged =
        pneumoscope::train::checkpoint::CheckpointMeta { model: pneumoscope::model::ModelKind::Regularized, ..meta };
    pneumoscope::train::checkpoint::rewrite_meta(&path, &forged).unwrap();
    let img = std::fs::read_dir(data.join("test/NORMAL")).unwrap().next().unwrap().unwrap().path();
    let out = run_in(tmp.path(), &["predict", "--checkpoint", path.to_str().unwrap(), img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("forged.ckpt") && text(&out).contains("do not fit"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "no panic message on the screen: {}", text(&out));
}

#[test]
fn odd_files_sixteen_bit_symlink_loops_and_one_class_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 40, 10, 24);
    let normal = data.join("train/NORMAL");
    // A 16-bit gray PNG is converted, not refused.
    let img16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(90, 70, |x, y| {
        image::Luma([(x * 600 + y * 10) as u16])
    });
    img16.save(normal.join("sixteen.png")).unwrap();
    // A symlink pointing at itself is reported, not followed forever.
    std::os::unix::fs::symlink(normal.join("loop.jpeg"), normal.join("loop.jpeg")).unwrap();
    let out = run_in(tmp.path(), &["data", "stats", "--data", data.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["unreadable"].as_array().unwrap().is_empty(), "{}", v["unreadable"]);
    assert!(v["ignored"].to_string().contains("loop.jpeg"), "{}", v["ignored"]);
    assert!(v["splits"]["train"]["NORMAL"]["channels"]["1"].as_u64().unwrap() > 0);

    // Only one class in train/: an error naming the folder that is missing.
    std::fs::remove_dir_all(data.join("train/NORMAL")).unwrap();
    std::fs::remove_dir_all(data.join("val/NORMAL")).unwrap();
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", data.to_str().unwrap(), "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("train/NORMAL") && text(&out).contains("missing"), "{}", text(&out));
}
