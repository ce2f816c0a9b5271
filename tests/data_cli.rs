//! The data commands and input validation, through the real binary.

mod common;
use common::*;
use std::path::Path;

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for split in ["train", "val", "test"] {
        for class in ["NORMAL", "PNEUMONIA"] {
            let d = dir.join(split).join(class);
            let mut names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            for p in names {
                out.push((p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[test]
fn synth_is_byte_identical_for_a_seed_and_mirrors_the_kaggle_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    synth(&a, 120, 40, 9);
    synth(&b, 120, 40, 9);
    synth(&c, 120, 40, 10);
    let fa = files_under(&a);
    assert_eq!(fa.len(), 160);
    assert!(fa == files_under(&b), "same seed must give byte-identical files");
    assert!(fa != files_under(&c), "another seed must give other files");
    // names in the Kaggle styles, several images per patient
    assert!(fa
        .iter()
        .any(|(n, _)| n.contains("PNEUMONIA/person") && (n.contains("_bacteria_") || n.contains("_virus_"))));
    assert!(fa.iter().any(|(n, _)| n.contains("NORMAL/IM-") || n.contains("NORMAL/NORMAL2-IM-")));
    assert!(a.join("SYNTHETIC-pneumoscope.json").is_file(), "the data set is marked synthetic");

    // stats: counts, ratios, channel mix, and the SYNTHETIC label; the parent folder works as root too.
    let parent = tmp.path().join("parent");
    std::fs::create_dir_all(&parent).unwrap();
    std::fs::rename(&a, parent.join("chest_xray")).unwrap();
    let out = run_in(tmp.path(), &["data", "stats", "--data", parent.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["synthetic"], true);
    let n = |s: &str, c: &str| v["splits"][s][c]["readable"].as_u64().unwrap() as f64;
    let train_ratio = n("train", "PNEUMONIA") / n("train", "NORMAL");
    assert!((2.5..3.3).contains(&train_ratio), "train imbalance 1:{train_ratio}");
    let test_ratio = n("test", "PNEUMONIA") / n("test", "NORMAL");
    assert!((1.4..1.95).contains(&test_ratio), "test imbalance 1:{test_ratio}");
    let ch = &v["splits"]["train"]["PNEUMONIA"]["channels"];
    assert!(ch["1"].as_u64().unwrap() > 0 && ch["3"].as_u64().unwrap() > 0, "mix of 1- and 3-channel files: {ch}");
    // The causes the PNEUMONIA file names state (the three-class task's classes) add up to the class.
    let causes = &v["splits"]["train"]["PNEUMONIA"]["causes"];
    let cause = |k: &str| causes[k].as_u64().unwrap_or(0) as f64;
    assert!(cause("bacterial") > 0.0 && cause("viral") > 0.0, "{causes}");
    assert_eq!(
        cause("bacterial") + cause("viral"),
        v["splits"]["train"]["PNEUMONIA"]["files"].as_u64().unwrap() as f64
    );
    let text_out = run_in(tmp.path(), &["data", "stats", "--data", parent.to_str().unwrap()]);
    assert!(text(&text_out).contains("SYNTHETIC"), "{}", text(&text_out));
    assert!(text(&text_out).contains("PNEUMONIA by cause"), "{}", text(&text_out));
}

#[test]
fn bad_files_are_named_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    synth(&d, 40, 10, 3);
    let normal = d.join("train/NORMAL");
    let good = std::fs::read_dir(&normal).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(normal.join("truncated.jpeg"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(normal.join("empty.jpeg"), b"").unwrap();
    std::fs::write(normal.join("notes.jpeg"), b"this is not an image").unwrap();
    std::fs::write(normal.join("readme.txt"), b"hello").unwrap();
    bomb_jpeg(&good, &normal.join("bomb.jpeg"));
    // A PNG saved with a .JPG extension still loads (format from content, extension case-insensitive).
    let png = image::GrayImage::from_pixel(80, 70, image::Luma([120]));
    png.save_with_format(normal.join("actually-png.JPG"), image::ImageFormat::Png).unwrap();

    let out = run_in(tmp.path(), &["data", "stats", "--data", d.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unreadable: Vec<String> = v["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{} {}", u["path"].as_str().unwrap(), u["error"].as_str().unwrap()))
        .collect();
    assert_eq!(unreadable.len(), 4, "{unreadable:?}");
    for (name, why) in
        [("truncated.jpeg", "decode"), ("empty.jpeg", "empty"), ("notes.jpeg", "not a JPEG"), ("bomb.jpeg", "30000")]
    {
        assert!(unreadable.iter().any(|u| u.contains(name) && u.contains(why)), "{name}: {unreadable:?}");
    }
    assert!(v["ignored"].to_string().contains("readme.txt"));
    let train_normal = &v["splits"]["train"]["NORMAL"];
    assert_eq!(train_normal["files"].as_u64().unwrap() - train_normal["readable"].as_u64().unwrap(), 4);

    // Training skips them with a message naming each file, and goes on.
    let out = run_in(
        tmp.path(),
        &[
            "train",
            "--no-tui",
            "--data",
            d.to_str().unwrap(),
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--models",
            "simple",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for name in ["truncated.jpeg", "empty.jpeg", "notes.jpeg", "bomb.jpeg"] {
        assert!(t.contains(name), "training output should name {name}: {t}");
    }
    assert!(t.contains("4 unreadable files skipped"), "{t}");
}

#[test]
fn missing_or_empty_training_folders_are_errors_naming_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    std::fs::create_dir_all(d.join("test/NORMAL")).unwrap();
    let out = run_in(tmp.path(), &["data", "stats", "--data", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&d.join("train").display().to_string()), "{}", text(&out));

    std::fs::create_dir_all(d.join("train/NORMAL")).unwrap();
    std::fs::create_dir_all(d.join("train/PNEUMONIA")).unwrap();
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", d.to_str().unwrap(), "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("train/NORMAL") && text(&out).contains("no images"), "{}", text(&out));

    let out = run_in(tmp.path(), &["data", "stats", "--data", "/nonexistent/chest_xray"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("/nonexistent/chest_xray") && text(&out).contains("does not exist"), "{}", text(&out));
}

#[test]
fn usage_and_config_errors_exit_2_naming_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[training]\nbatch_size = 0\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--no-tui", "--config", cfg.to_str().unwrap()], "batch_size"),
        (vec!["train", "--no-tui", "--models", "vgg16"], "vgg16"),
        (vec!["train", "--no-tui", "--epochs", "0"], "epochs"),
        (vec!["train", "--no-tui", "--device", "tpu"], "--device"),
        (vec!["train", "--no-tui", "--image-size", "many"], "--image-size"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = run_in(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?} should mention {needle}: {}", text(&out));
    }
    std::fs::write(&cfg, "[data]\nroot = \"x\"\nsplit = \"random\"\n").unwrap();
    let out = run_in(tmp.path(), &["data", "stats", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("patient") && text(&out).contains("random"), "{}", text(&out));
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    synth(&d, 40, 10, 1);
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", d.to_str().unwrap(), "--device", "cuda"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("built without CUDA") && text(&out).contains("--features cuda"), "{}", text(&out));
    assert!(!tmp.path().join("runs").exists() || std::fs::read_dir(tmp.path().join("runs")).unwrap().count() == 0);
}

#[test]
fn help_lists_every_command_and_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path(), &["--help"]);
    assert!(out.status.success());
    let t = text(&out);
    for w in ["train", "data", "predict", "eval", "--no-tui", "Exit codes"] {
        assert!(t.contains(w), "--help should mention {w}");
    }
    let t = text(&run_in(tmp.path(), &["train", "--help"]));
    for w in ["--config", "--data", "--models", "--epochs", "--image-size", "--batch-size", "--device", "--seed"] {
        assert!(t.contains(w), "train --help should mention {w}");
    }
}

#[test]
fn bench_models_measures_each_model_in_its_own_process() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(
        tmp.path(),
        &["bench", "models", "--models", "simple,regularized", "--sizes", "16", "--steps", "1", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 2);
    for f in &v {
        for k in ["train_images_per_sec", "infer_images_per_sec", "single_image_ms", "peak_rss_mb"] {
            assert!(f[k].as_f64().unwrap() > 0.0, "{k} in {f}");
        }
        assert!((0.0..=1.0).contains(&f["loader_wait_share"].as_f64().unwrap()));
        // Every step's time, the untimed warm-up first; the timed ones make up the mean step time.
        let steps: Vec<f64> = f["step_secs"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
        assert_eq!(steps.len(), 2, "{f}");
        assert!(steps.iter().all(|&s| s > 0.0), "{f}");
        let mean = f["train_step_secs"].as_f64().unwrap();
        assert!((steps[1] - mean).abs() <= 1e-3 * mean, "{f}");
    }
    let out = run_in(tmp.path(), &["bench", "models", "--models", "vgg"]);
    assert_eq!(out.status.code(), Some(2));
}
