//! Patient ids from file names and the seeded train/validation split (by patient or by image).
//! Pure functions over sample lists; must not depend on decoding, model, train or front-ends.

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use serde::{Deserialize, Serialize};

use super::layout::Layout;
use super::{Class, Sample};
use crate::config::{DataConfig, SplitMode};

/// Splits `samples` into (train, validation) with about `val_fraction` of each class in validation.
///
/// `Patient` mode shuffles whole patients (grouped by their majority class) and fills validation
/// class by class, so no patient is on both sides; `Image` mode shuffles single images (stratified).
/// The same seed and input give the same split.
pub fn split(samples: &[Sample], val_fraction: f64, mode: SplitMode, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SPLIT_SALT);
    // Groups: one per patient (patient mode) or one per image (image mode).
    let mut groups: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        let key = match mode {
            SplitMode::Patient => s.patient.clone(),
            SplitMode::Image => format!("{i:09}"),
        };
        groups.entry(key).or_default().push(s);
    }
    let mut train = Vec::new();
    let mut val = Vec::new();
    for class in Class::ALL {
        let mut class_groups: Vec<&Vec<&Sample>> = groups
            .values()
            .filter(|g| {
                let pneu = g.iter().filter(|s| s.label == Class::Pneumonia).count();
                let majority = if 2 * pneu > g.len() { Class::Pneumonia } else { Class::Normal };
                majority == class
            })
            .collect();
        class_groups.shuffle(&mut rng);
        let total: usize = class_groups.iter().map(|g| g.len()).sum();
        let target = (total as f64 * val_fraction).round() as usize;
        let mut taken = 0;
        for g in class_groups {
            // Take a group for validation while that brings the count closer to the target.
            let side = if taken < target && (taken + g.len()).abs_diff(target) <= target - taken {
                taken += g.len();
                &mut val
            } else {
                &mut train
            };
            side.extend(g.iter().map(|s| (*s).clone()));
        }
    }
    // Deterministic order independent of the class loop.
    train.sort_by(|a, b| a.path.cmp(&b.path));
    val.sort_by(|a, b| a.path.cmp(&b.path));
    (train, val)
}

/// Keeps the split's random stream apart from other uses of the same seed.
const SPLIT_SALT: u64 = 0x5311_7000_0000_0001;
/// Keeps the held-out test split's draw apart from the validation split's.
const TEST_SALT: u64 = 0x7E57_0000_0000_0002;

/// Where a run's test images come from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestSource {
    /// The data folder's own `test/` split.
    #[default]
    Folder,
    /// No `test/` folder: this share of the training images held out by patient (`data.test_fraction`).
    HeldOut { fraction: f64 },
}

impl TestSource {
    /// One phrase for headers and reports: "test/ folder" or "held out from train/ by patient (15 %)".
    pub fn describe(&self) -> String {
        match self {
            TestSource::Folder => "the test/ folder".into(),
            TestSource::HeldOut { fraction } => {
                format!("held out from train/ by patient ({:.0} %; no test/ folder)", 100.0 * fraction)
            }
        }
    }
}

/// The settings that decide a run's split, recorded in its checkpoints so that `eval` can rebuild a held-out
/// test split exactly (and never test on images the model trained on).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSettings {
    pub seed: u64,
    pub mode: SplitMode,
    pub val_fraction: f64,
    pub test_fraction: f64,
    pub test_source: TestSource,
}

impl SplitSettings {
    pub fn of(data: &DataConfig, test_source: TestSource) -> Self {
        Self {
            seed: data.seed,
            mode: data.split,
            val_fraction: data.val_fraction,
            test_fraction: data.test_fraction,
            test_source,
        }
    }

    /// `data` with these settings in place.
    pub fn apply(&self, data: &DataConfig) -> DataConfig {
        DataConfig {
            seed: self.seed,
            split: self.mode,
            val_fraction: self.val_fraction,
            test_fraction: self.test_fraction,
            ..data.clone()
        }
    }
}

/// The three splits of a run, before decoding: the folder's train/ and val/ merged and split into training and
/// validation, and the test/ folder — or, when there is none, a test split held out from train/ first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SplitPlan {
    pub train: Vec<Sample>,
    pub validation: Vec<Sample>,
    pub test: Vec<Sample>,
    pub test_source: TestSource,
}

impl SplitPlan {
    /// The plan as `data split --out` writes it: the settings, the folder, and per split the files (relative to
    /// `root`) with their class and patient.
    pub fn to_json(&self, root: &Path, data: &DataConfig) -> serde_json::Value {
        let items = |v: &[Sample]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|s| {
                    let rel = s.path.strip_prefix(root).unwrap_or(&s.path);
                    serde_json::json!({"path": rel, "label": s.label.folder(), "patient": s.patient})
                })
                .collect()
        };
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        serde_json::json!({
            "root": root,
            "settings": SplitSettings::of(data, self.test_source),
            "train": items(&self.train),
            "validation": items(&self.validation),
            "test": items(&self.test),
        })
    }
}

/// Splits a scanned data folder as `data` says (seeded: the same folder and settings give the same plan).
pub fn plan(layout: &Layout, data: &DataConfig) -> SplitPlan {
    // The Kaggle val/ split (16 images) is merged into train and a real validation split is held out.
    let merged: Vec<Sample> = layout.train.iter().chain(layout.val.iter()).cloned().collect();
    let (rest, test, test_source) = if layout.test.is_empty() {
        let (rest, test) = split(&merged, data.test_fraction, data.split, data.seed ^ TEST_SALT);
        (rest, test, TestSource::HeldOut { fraction: data.test_fraction })
    } else {
        (merged, layout.test.clone(), TestSource::Folder)
    };
    let (train, validation) = split(&rest, data.val_fraction, data.split, data.seed);
    SplitPlan { train, validation, test, test_source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;

    fn samples() -> Vec<Sample> {
        let mut v = Vec::new();
        for p in 0..60 {
            let (label, n) = if p % 3 == 0 { (Class::Normal, 2) } else { (Class::Pneumonia, 1 + p % 4) };
            for i in 0..n {
                let name = format!("person{p}_x_{i}.jpeg");
                v.push(Sample::new(PathBuf::from(&name), label, format!("person{p}")));
            }
        }
        v
    }

    #[test]
    fn patient_split_keeps_each_patient_on_one_side() {
        let all = samples();
        let (train, val) = split(&all, 0.2, SplitMode::Patient, 7);
        assert_eq!(train.len() + val.len(), all.len());
        let tp: HashSet<_> = train.iter().map(|s| &s.patient).collect();
        let vp: HashSet<_> = val.iter().map(|s| &s.patient).collect();
        assert!(tp.is_disjoint(&vp), "a patient is on both sides: {:?}", tp.intersection(&vp).collect::<Vec<_>>());
        let share = val.len() as f64 / all.len() as f64;
        assert!((0.12..=0.28).contains(&share), "validation share {share}");
        // both classes present in validation
        assert!(val.iter().any(|s| s.label == Class::Normal) && val.iter().any(|s| s.label == Class::Pneumonia));
    }

    #[test]
    fn without_a_test_folder_a_test_split_is_held_out_by_patient_first() {
        let layout = Layout { train: samples(), ..Default::default() };
        let data = DataConfig { test_fraction: 0.15, val_fraction: 0.2, seed: 3, ..Default::default() };
        let p = plan(&layout, &data);
        assert_eq!(p.test_source, TestSource::HeldOut { fraction: 0.15 });
        assert_eq!(p.train.len() + p.validation.len() + p.test.len(), layout.train.len());
        let patients = |v: &[Sample]| v.iter().map(|s| s.patient.clone()).collect::<HashSet<_>>();
        let (tr, va, te) = (patients(&p.train), patients(&p.validation), patients(&p.test));
        assert!(tr.is_disjoint(&te) && va.is_disjoint(&te) && tr.is_disjoint(&va), "a patient on two sides");
        let share = p.test.len() as f64 / layout.train.len() as f64;
        assert!((0.08..=0.22).contains(&share), "test share {share}");
        assert!(p.test.iter().any(|s| s.label == Class::Normal) && p.test.iter().any(|s| s.label == Class::Pneumonia));
        assert_eq!(plan(&layout, &data), p, "seeded");
        // The recorded settings rebuild the same split.
        let recorded = SplitSettings::of(&data, p.test_source);
        assert_eq!(plan(&layout, &recorded.apply(&DataConfig::default())), p);
        // With a test/ folder, it is the test split and nothing is held out of train/.
        let with_test = Layout { test: samples()[..5].to_vec(), ..layout.clone() };
        let q = plan(&with_test, &data);
        assert_eq!((q.test_source, q.test.len()), (TestSource::Folder, 5));
        assert_eq!(q.train.len() + q.validation.len(), layout.train.len());
    }

    #[test]
    fn image_split_is_stratified_and_seeded() {
        let all = samples();
        let (t1, v1) = split(&all, 0.2, SplitMode::Image, 3);
        let (t2, v2) = split(&all, 0.2, SplitMode::Image, 3);
        assert_eq!((&t1, &v1), (&t2, &v2));
        let (_, v3) = split(&all, 0.2, SplitMode::Image, 4);
        assert_ne!(v1, v3, "another seed should give another split");
        let normal = all.iter().filter(|s| s.label == Class::Normal).count();
        let vn = v1.iter().filter(|s| s.label == Class::Normal).count();
        assert_eq!(vn, (normal as f64 * 0.2).round() as usize);
    }
}
