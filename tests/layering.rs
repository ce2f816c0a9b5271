//! The house's one-way layers: data → model → train (the engine) → front-ends (tui, headless, commands, bench,
//! signals). The lower layers, and the pure modules beside them, must not name a front-end; this test reads the
//! sources and fails, naming the file and line, when one does.

use std::path::{Path, PathBuf};

/// Modules that only front-ends may use.
const FRONT_ENDS: [&str; 5] = ["commands", "tui", "headless", "bench", "signals"];

/// The layers below the front-ends (folders and single files under src/).
const LOWER: [&str; 7] = ["data", "model", "train", "analysis", "metrics.rs", "config", "error.rs"];

fn sources(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            sources(&e.unwrap().path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn lower_layers_never_import_a_front_end() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for l in LOWER {
        sources(&src.join(l), &mut files);
    }
    assert!(files.len() > 20, "the layers were not found under {}", src.display());
    let mut offences = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for fe in FRONT_ENDS {
                for pattern in [format!("crate::{fe}::"), format!("crate::{fe};"), format!("crate::{{{fe}")] {
                    if code.contains(&pattern) {
                        offences.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(offences.is_empty(), "a lower layer imports a front-end:\n{}", offences.join("\n"));
}

/// Below the front-ends the layers run one way too: `data` knows neither models nor training, `model` knows
/// nothing of training.
#[test]
fn data_never_imports_model_or_train_and_model_never_imports_train() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    for (layer, above) in [("data", &["model", "train"][..]), ("model", &["train"][..])] {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources under src/{layer}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for a in above {
                    if [format!("crate::{a}::"), format!("crate::{a};"), format!("crate::{{{a}")]
                        .iter()
                        .any(|p| code.contains(p.as_str()))
                    {
                        offences.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(offences.is_empty(), "a layer imports one above it:\n{}", offences.join("\n"));
}

/// No source file grows past what one reader can hold: the engine, the dashboard's loop and its state were split
/// when they passed 700–1,100 lines.
#[test]
fn no_source_file_is_longer_than_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > 600)
        .map(|(f, n)| format!("{} ({n} lines)", f.display()))
        .collect();
    assert!(long.is_empty(), "split these files by job:\n{}", long.join("\n"));
}
