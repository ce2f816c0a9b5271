//! Helpers shared by the integration tests: run the real binary, make tiny synthetic data sets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pneumoscope"))
}

/// Runs the binary in `cwd` with a private cache folder; stdin closed, so stdout is not a terminal.
pub fn run_in(cwd: &Path, args: &[&str]) -> Output {
    run_in_env(cwd, &[], args)
}

/// `run_in` with extra environment variables.
pub fn run_in_env(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("XDG_CACHE_HOME", cwd.join("cache"))
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running pneumoscope")
}

/// Starts the binary in `dir` with stdout piped, waits for a stdout line containing `until`, then sends each of
/// `signals` (50 ms apart). Returns the exit code (-1 when killed by a signal), every stdout line, and the time from
/// the last signal to the exit.
pub fn train_until(dir: &Path, args: &[&str], until: &str, signals: &[i32]) -> (i32, Vec<String>, std::time::Duration) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let hit = line.contains(until);
        seen.push(line);
        if hit {
            break;
        }
    }
    for (i, &sig) in signals.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, sig);
        }
    }
    let signalled = std::time::Instant::now();
    seen.extend(lines.map_while(Result::ok));
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, seen, signalled.elapsed())
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Writes a small synthetic data set with small images (fast to decode) into `dir`.
pub fn synth(dir: &Path, train: usize, test: usize, seed: u64) {
    let out = run_in(
        dir.parent().unwrap_or(Path::new(".")),
        &[
            "data",
            "synth",
            "--out",
            dir.to_str().unwrap(),
            "--train",
            &train.to_string(),
            "--test",
            &test.to_string(),
            "--seed",
            &seed.to_string(),
            "--min-side",
            "64",
            "--max-side",
            "96",
        ],
    );
    assert!(out.status.success(), "synth failed: {}", text(&out));
}

/// A JPEG whose header claims 30000×30000 pixels (a decompression bomb), from a real small JPEG.
pub fn bomb_jpeg(src: &Path, dst: &Path) {
    let mut bytes = std::fs::read(src).unwrap();
    let sof = bytes.windows(2).position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2)).expect("a SOF marker");
    // FF C0, length (2), precision (1), height (2), width (2)
    let h = sof + 5;
    bytes[h..h + 2].copy_from_slice(&30000u16.to_be_bytes());
    bytes[h + 2..h + 4].copy_from_slice(&30000u16.to_be_bytes());
    std::fs::write(dst, bytes).unwrap();
}

/// A checkpoint header for a fresh model of `kind` (32 px, threshold 0.42), for tests that save and load one.
pub fn checkpoint_meta(kind: pneumoscope::model::ModelKind) -> pneumoscope::train::checkpoint::CheckpointMeta {
    pneumoscope::train::checkpoint::CheckpointMeta {
        format: pneumoscope::train::checkpoint::FORMAT_VERSION,
        model: kind,
        image_size: 32,
        mean: [0.1, 0.2, 0.3],
        std: [0.4, 0.5, 0.6],
        class_names: vec!["NORMAL".into(), "PNEUMONIA".into()],
        threshold: 0.42,
        dropout: 0.5,
        epoch: 3,
        val_loss: None,
        val_accuracy: None,
        synthetic_data: false,
        data_source: Default::default(),
        init: pneumoscope::model::Init::Scratch,
        pneumoscope_version: "test".into(),
        created: "now".into(),
        train_state: None,
        tta: 1,
        split: None,
    }
}
