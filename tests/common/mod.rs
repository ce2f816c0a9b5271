//! Helpers shared by the integration tests: run the real binary, make tiny synthetic data sets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pneumoscope"))
}

/// Runs the binary in `cwd` with a private cache folder; stdin closed, so stdout is not a terminal.
pub fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("XDG_CACHE_HOME", cwd.join("cache"))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running pneumoscope")
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
