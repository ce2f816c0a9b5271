//! Scanning `ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*`: which files exist, their class and patient.
//! Reads directory listings only (no decoding); must not depend on model, train or front-ends.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::{Class, ClassCounts, Sample};
use crate::error::Result;

/// The three folders of the Kaggle layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl SplitName {
    pub const ALL: [SplitName; 3] = [SplitName::Train, SplitName::Val, SplitName::Test];
    pub fn folder(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        }
    }
}

/// A file in a class folder that is not taken as an image, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    pub path: PathBuf,
    pub reason: String,
}

/// What was found under a data root.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Layout {
    /// The folder that holds `train/` (the given root or its `chest_xray/` child).
    pub root: PathBuf,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub test: Vec<Sample>,
    /// Files skipped without decoding (wrong extension, not a regular file).
    pub ignored: Vec<Ignored>,
    /// Missing optional folders and empty classes, one line each.
    pub warnings: Vec<String>,
}

/// Extensions taken as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpeg", "jpg", "png", "dcm", "dicom"];

pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

/// Finds the folder holding `train/`: `root` itself, `root/chest_xray`, or the Kaggle zip's doubled
/// `root/chest_xray/chest_xray`.
pub fn resolve_root(root: &Path) -> Result<PathBuf> {
    if !root.exists() {
        bail!("data folder {} does not exist", root.display());
    }
    if !root.is_dir() {
        bail!("data folder {} is not a folder", root.display());
    }
    let candidates = [root.to_path_buf(), root.join("chest_xray"), root.join("chest_xray").join("chest_xray")];
    for c in &candidates {
        if c.join("train").is_dir() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no training data under {}: expected the folder {} (with NORMAL/ and PNEUMONIA/ inside), \
         or {}",
        root.display(),
        root.join("train").display(),
        root.join("chest_xray").join("train").display()
    )
}

impl Layout {
    /// Scans a data root. A missing `train/` split or train class is an error; a missing `val/` or
    /// `test/`, or an empty test class, is a warning.
    pub fn scan(root: &Path) -> Result<Layout> {
        let root = resolve_root(root)?;
        let mut layout = Layout { root: root.clone(), ..Default::default() };
        for split in SplitName::ALL {
            let dir = root.join(split.folder());
            if !dir.is_dir() {
                // val/ is optional (it is merged into train/); without test/, training holds one out.
                if split == SplitName::Test {
                    layout.warnings.push(format!(
                        "no test/ folder ({} is missing): training holds out data.test_fraction of train/ by \
                         patient as the test split",
                        dir.display()
                    ));
                }
                continue;
            }
            let mut samples = Vec::new();
            for class in Class::ALL {
                let class_dir = dir.join(class.folder());
                if !class_dir.is_dir() {
                    let msg = format!("class folder {} is missing", class_dir.display());
                    if split == SplitName::Train {
                        bail!("{msg}: training needs both NORMAL/ and PNEUMONIA/ images");
                    }
                    layout.warnings.push(msg);
                    continue;
                }
                let before = samples.len();
                scan_class(&class_dir, class, &mut samples, &mut layout.ignored)?;
                if samples.len() == before {
                    let msg = format!("class folder {} holds no images (.jpeg, .jpg, .png, .dcm)", class_dir.display());
                    if split == SplitName::Train {
                        bail!("{msg}: training needs images of both classes");
                    }
                    layout.warnings.push(msg);
                }
            }
            match split {
                SplitName::Train => layout.train = samples,
                SplitName::Val => layout.val = samples,
                SplitName::Test => layout.test = samples,
            }
        }
        Ok(layout)
    }

    pub fn split(&self, split: SplitName) -> &[Sample] {
        match split {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }

    pub fn counts(&self, split: SplitName) -> ClassCounts {
        ClassCounts::of(self.split(split))
    }
}

/// The patient a file belongs to, from the Kaggle naming schemes:
/// `person1234_bacteria_567.jpeg` → `person1234`, `IM-0115-0001.jpeg` → `IM-0115`,
/// `NORMAL2-IM-0927-0001.jpeg` → `NORMAL2-IM-0927`. Any other name is its own patient. A DICOM file's key is
/// a hash of the PatientID in its header, when it has one (`dicom::patient_key`).
pub fn patient_key(path: &Path) -> String {
    if let Some(key) = super::dicom::has_dicom_extension(path).then(|| super::dicom::patient_key(path)).flatten() {
        return key;
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if let Some(rest) = stem.strip_prefix("person") {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() {
            return format!("person{digits}");
        }
    }
    // IM-NNNN-MMMM and NORMAL2-IM-NNNN-MMMM: drop the last dash-separated part (the image number).
    if stem.contains("IM-") {
        if let Some((patient, image)) = stem.rsplit_once('-') {
            if !image.is_empty() && image.chars().all(|c| c.is_ascii_digit()) && patient.contains("IM-") {
                return patient.to_string();
            }
        }
    }
    stem.to_string()
}

fn scan_class(dir: &Path, class: Class, out: &mut Vec<Sample>, ignored: &mut Vec<Ignored>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        paths.push(entry.path());
    }
    // Directory order differs between file systems; sort so scans (and so splits) are reproducible.
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue; // .DS_Store and friends
        }
        if !has_image_extension(&path) {
            ignored.push(Ignored { path, reason: "not an image file extension (.jpeg, .jpg, .png, .dcm)".into() });
            continue;
        }
        // metadata() follows symlinks: a dangling link or a loop fails here instead of at decode time.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                ignored.push(Ignored { path, reason: "not a regular file".into() });
                continue;
            }
            Err(e) => {
                ignored.push(Ignored { path, reason: format!("cannot read: {e}") });
                continue;
            }
        }
        let patient = patient_key(&path);
        out.push(Sample::new(path, class, patient));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_keys_follow_kaggle_names() {
        let k = |n: &str| patient_key(Path::new(n));
        assert_eq!(k("person1234_bacteria_567.jpeg"), "person1234");
        assert_eq!(k("person1_virus_6.jpeg"), "person1");
        assert_eq!(k("IM-0115-0001.jpeg"), "IM-0115");
        assert_eq!(k("NORMAL2-IM-0927-0001.jpeg"), "NORMAL2-IM-0927");
        assert_eq!(k("scan.png"), "scan");
        assert_eq!(k("personal.jpeg"), "personal");
    }
}
