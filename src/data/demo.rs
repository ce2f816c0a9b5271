//! The data sets `pneumoscope` trains on when no data folder is given: a small real subset of the Kaggle
//! training radiographs built into the binary (the default), or the SYNTHETIC generator; both written once into
//! the cache folder, and how a data folder is labelled. Must not depend on model, train or front-ends.

use std::path::{Path, PathBuf};

use anyhow::Context;
use include_dir::{include_dir, Dir};
use serde::{Deserialize, Serialize};

use super::synth;
use crate::config::{Config, DemoSource};
use crate::error::Result;

/// The real subset, as committed under assets/demo/chest_xray (see assets/demo/README.md and
/// examples/make_demo_subset.rs): whole patients drawn from the Kaggle training split, grayscale 128 px JPEGs.
static SUBSET: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/demo/chest_xray");

/// Written last into an extracted subset: its presence means the extraction completed.
pub const MARKER: &str = "DEMO-SUBSET-pneumoscope.json";
/// Bumped whenever the committed subset changes, so a stale extraction is not reused.
pub const SUBSET_VERSION: u32 = 1;

/// What a data folder holds, for labels in the dashboard, logs, reports and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// A folder the user gave (the real data set, or their own).
    #[default]
    Folder,
    /// The small real subset built into pneumoscope.
    RealSubset,
    /// Procedurally drawn pictures (`data synth`, or `demo.source = "synthetic"`).
    Synthetic,
}

impl DataSource {
    /// Recognises the generated folders by their marker files.
    pub fn of(root: &Path) -> Self {
        if synth::is_synthetic(root) {
            DataSource::Synthetic
        } else if is_subset(root) {
            DataSource::RealSubset
        } else {
            DataSource::Folder
        }
    }

    pub fn is_synthetic(self) -> bool {
        self == DataSource::Synthetic
    }

    /// A short qualifier after the data folder's name ("" for a user's folder).
    pub fn label(self) -> &'static str {
        match self {
            DataSource::Folder => "",
            DataSource::RealSubset => "small REAL demo subset (not the full data set)",
            DataSource::Synthetic => "SYNTHETIC demo data (not real radiographs)",
        }
    }
}

/// True when `root` (or its `chest_xray/` child) is an extracted real subset.
pub fn is_subset(root: &Path) -> bool {
    root.join(MARKER).is_file() || root.join("chest_xray").join(MARKER).is_file()
}

/// Number of images in the built-in real subset.
pub fn subset_len() -> usize {
    fn count(d: &Dir) -> usize {
        d.files().count() + d.dirs().map(count).sum::<usize>()
    }
    count(&SUBSET)
}

/// The data set used when the configured data folder is the default one and does not exist: the real subset
/// (`demo.source = "real"`) or the SYNTHETIC one, written once into the cache folder. Returns its path.
pub fn ensure(cfg: &Config, say: &dyn Fn(&str)) -> Result<PathBuf> {
    match cfg.demo.source {
        DemoSource::Real => ensure_subset(&cfg.cache_dir(), &cfg.data.root, say),
        DemoSource::Synthetic => ensure_synthetic(cfg, say),
    }
}

/// Extracts the built-in real subset into `cache/demo-real-vN/chest_xray` (once) and returns that folder.
pub fn ensure_subset(cache: &Path, missing_root: &Path, say: &dyn Fn(&str)) -> Result<PathBuf> {
    let dir = cache.join(format!("demo-real-v{SUBSET_VERSION}")).join("chest_xray");
    if dir.join(MARKER).is_file() {
        say(&format!("using the built-in small REAL demo subset in {}", dir.display()));
        return Ok(dir);
    }
    say(&format!(
        "data folder {} not found: training on the built-in small REAL demo subset ({} Kaggle training films, \
         128 px; not the full data set), written to {}",
        missing_root.display(),
        subset_len(),
        dir.display()
    ));
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    SUBSET.extract(&tmp).with_context(|| format!("cannot write the demo subset into {}", tmp.display()))?;
    let marker = serde_json::json!({
        "what": "a small real subset of the Kaggle \"Chest X-Ray Images (Pneumonia)\" training split, built into \
                 pneumoscope (see its assets/demo/README.md for provenance, licence and attribution)",
        "version": SUBSET_VERSION,
        "images": subset_len(),
        "licence": "CC BY 4.0 (Kermany, Zhang, Goldbaum et al., Mendeley Data v2, doi:10.17632/rscbjbr9sj.2)",
    });
    std::fs::write(tmp.join(MARKER), serde_json::to_vec_pretty(&marker)?)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    Ok(dir)
}

/// Generates (once) the SYNTHETIC demo data set for `cfg` in the cache folder and returns its path.
pub fn ensure_synthetic(cfg: &Config, say: &dyn Fn(&str)) -> Result<PathBuf> {
    let spec = synth::SynthSpec::new(cfg.demo.train_images, cfg.demo.test_images, cfg.demo.seed);
    let dir = cfg.cache_dir().join(format!(
        "synthetic-v{}-seed{}-{}x{}",
        synth::GENERATOR_VERSION,
        spec.seed,
        spec.train,
        spec.test
    ));
    if dir.join(synth::MARKER).is_file() {
        say(&format!("using the SYNTHETIC demo data set in {}", dir.display()));
        return Ok(dir);
    }
    say(&format!(
        "data folder {} not found: generating a SYNTHETIC demo data set ({} train+val, {} test images) in {}",
        cfg.data.root.display(),
        spec.train,
        spec.test,
        dir.display()
    ));
    // Write into a temporary sibling and rename, so an interrupted generation is never taken as complete.
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    synth::generate(&tmp, &spec, &|_, _| {})?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_subset_extracts_once_and_is_labelled_real() {
        let cache = tempfile::tempdir().unwrap();
        let said = std::sync::Mutex::new(Vec::new());
        let say = |m: &str| said.lock().unwrap().push(m.to_string());
        let dir = ensure_subset(cache.path(), Path::new("chest_xray"), &say).unwrap();
        let layout = super::super::layout::Layout::scan(&dir).unwrap();
        assert_eq!(layout.train.len(), subset_len());
        assert!(layout.counts(super::super::layout::SplitName::Train).normal >= 300);
        assert!(layout.test.is_empty(), "the subset has train/ only: runs hold a test split out of it");
        assert_eq!(DataSource::of(&dir), DataSource::RealSubset);
        assert_eq!(DataSource::of(dir.parent().unwrap()), DataSource::RealSubset);
        // The second call reuses the extraction.
        ensure_subset(cache.path(), Path::new("chest_xray"), &say).unwrap();
        let said = said.lock().unwrap();
        assert!(said[0].contains("REAL demo subset") && said[1].starts_with("using"), "{said:?}");
    }
}
