//! Inputs a hostile but realistic user gives, each refused by name or handled without losing anything: duplicate
//! models, absurd thread counts, a synthetic set written over an existing one, symlink loops and non-UTF-8 names
//! given to predict, a heatmap folder that is a file, a data check that fails before training, an unknown GEMM
//! instruction set.

mod common;
use common::*;

/// A tiny data set and a regularized CNN trained on it for one epoch; returns (data folder, best checkpoint).
fn trained(tmp: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = tmp.join("data");
    synth(&data, 40, 6, 31);
    let args =
        ["train", "--no-tui", "--data", data.to_str().unwrap(), "--epochs", "1", "--image-size", "24", "--models"];
    let out = run_in(tmp, &[&args[..], &["regularized"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let run = std::fs::read_dir(tmp.join("runs")).unwrap().next().unwrap().unwrap().path();
    (data, run.join("checkpoints/regularized-best.ckpt"))
}

#[test]
fn duplicate_models_and_absurd_thread_counts_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 20, 4, 30);
    let d = data.to_str().unwrap();
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", d, "--models", "simple,simple"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("`--models`") && text(&out).contains("twice"), "{}", text(&out));
    std::fs::write(tmp.path().join("threads.toml"), "[training]\nthreads = 100000\n").unwrap();
    let started = std::time::Instant::now();
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", d, "--config", "threads.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("training.threads"), "{}", text(&out));
    assert!(started.elapsed().as_secs() < 20, "refused at once, not after starting 100000 threads");
    assert!(!tmp.path().join("runs").exists());
}

#[test]
fn data_synth_never_writes_into_an_existing_data_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 20, 4, 32);
    let before: Vec<_> = walk(&data);
    let out = run_in(
        tmp.path(),
        &["data", "synth", "--out", data.to_str().unwrap(), "--train", "10", "--test", "4", "--seed", "9"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert_eq!(walk(&data), before, "nothing added, removed or rewritten");
}

/// Every file under `dir` with its bytes, sorted.
fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn predict_takes_each_file_once_and_writes_non_utf8_names_lossily() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpt) = trained(tmp.path());
    let dir = tmp.path().join("imgs");
    std::fs::create_dir(&dir).unwrap();
    let src: Vec<_> = std::fs::read_dir(data.join("test/NORMAL")).unwrap().map(|e| e.unwrap().path()).collect();
    std::fs::copy(&src[0], dir.join("a.png")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    std::fs::copy(&src[1], dir.join(odd)).unwrap();
    // A loop back to the folder itself, and a second way to the same folder.
    std::os::unix::fs::symlink(".", dir.join("self")).unwrap();
    std::os::unix::fs::symlink(&dir, tmp.path().join("again")).unwrap();
    let c = ckpt.to_str().unwrap();
    let out = run_in(tmp.path(), &["predict", "--checkpoint", c, "--json", "imgs", "again"]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "two images, each once: {lines:?}");
    let lossy: Vec<_> = lines.iter().filter(|l| l["path_lossy"] == true).collect();
    assert_eq!(lossy.len(), 1, "{lines:?}");
    assert!(lossy[0]["path"].as_str().unwrap().contains("caf\u{fffd}.png"));
    assert!(lossy[0]["p_pneumonia"].is_number());
    assert!(text(&out).contains("not UTF-8"), "{}", text(&out));
    // --heatmap pointing at a file is a usage error, before any work.
    std::fs::write(tmp.path().join("plain-file"), b"x").unwrap();
    let out = run_in(tmp.path(), &["predict", "--checkpoint", c, "--heatmap", "plain-file", "imgs/a.png"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("plain-file"), "{}", text(&out));
}

#[test]
fn a_data_check_that_fails_leaves_no_run_folder_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 20, 4, 33);
    // Every NORMAL training image unreadable: the run cannot start.
    for dir in ["train/NORMAL", "val/NORMAL"] {
        for e in std::fs::read_dir(data.join(dir)).unwrap() {
            std::fs::write(e.unwrap().path(), b"not an image").unwrap();
        }
    }
    let out = run_in(tmp.path(), &["train", "--no-tui", "--data", data.to_str().unwrap(), "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("both classes are needed"), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("runs")).map(|d| d.collect()).unwrap_or_default();
    assert!(left.is_empty(), "an empty run folder was left behind: {left:?}");
}

/// `PNEUMOSCOPE_GEMM` picks the convolutions' instruction set: a value that is not one is refused by name before
/// anything is written; an instruction set this CPU has is used and named in the run's device line.
#[test]
fn the_gemm_instruction_set_is_checked_and_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let out = run_in_env(tmp.path(), &[("PNEUMOSCOPE_GEMM", "sse")], &["data", "synth", "--out", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("PNEUMOSCOPE_GEMM=sse") && text(&out).contains("auto, avx2, avx512 or amx-bf16"),
        "{}",
        text(&out)
    );
    assert!(!data.exists());
    synth(&data, 20, 4, 32);
    let cpu = pneumoscope_kernels::gemm_isa::Cpu::detect();
    let (value, shown) = if cpu.avx2 { ("avx2", "AVX2 conv GEMM") } else { ("auto", "conv GEMM") };
    let args = ["train", "--no-tui", "--data", d, "--epochs", "1", "--image-size", "24", "--models", "simple"];
    let out = run_in_env(tmp.path(), &[("PNEUMOSCOPE_GEMM", value)], &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(shown), "{}", text(&out));
    if !cpu.avx512 {
        let out = run_in_env(tmp.path(), &[("PNEUMOSCOPE_GEMM", "avx512")], &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("no AVX-512F"), "{}", text(&out));
    }
    // Mixed precision on AMX tiles: trained and named where the CPU has them, refused by name where not.
    let out = run_in_env(tmp.path(), &[("PNEUMOSCOPE_GEMM", "amx-bf16")], &args);
    if cpu.amx_bf16 {
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("AMX bf16 conv GEMM"), "{}", text(&out));
    } else {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("PNEUMOSCOPE_GEMM=amx-bf16") && text(&out).contains("no AMX"), "{}", text(&out));
    }
}
