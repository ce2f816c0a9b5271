//! The data layer: scanning the Kaggle layout, decoding and preparing images, the split, batching with
//! prefetch and a cache, and the synthetic chest X-ray generator. Must not depend on model, train or front-ends.

pub mod augment;
pub mod demo;
pub mod dicom;
pub mod image;
pub mod image_error;
pub mod layout;
pub mod loader;
pub mod pixels;
pub mod prepare;
pub mod split;
pub mod stats;
pub mod synth;
pub mod warp;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The two classes, in the order of the model's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Class {
    Normal = 0,
    Pneumonia = 1,
}

impl Class {
    pub const ALL: [Class; 2] = [Class::Normal, Class::Pneumonia];
    /// Folder names of the Kaggle layout, also the class names stored in checkpoints.
    pub const NAMES: [&'static str; 2] = ["NORMAL", "PNEUMONIA"];

    pub fn index(self) -> usize {
        self as usize
    }
    pub fn from_index(i: usize) -> Class {
        if i == 0 {
            Class::Normal
        } else {
            Class::Pneumonia
        }
    }
    pub fn folder(self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.folder())
    }
}

/// The cause of a PNEUMONIA film, as the Kaggle file names give it (`person1_bacteria_1.jpeg`,
/// `person1_virus_6.jpeg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    Bacterial,
    Viral,
}

impl Cause {
    /// The cause a file name states (`bacteria` or `virus`, any case), or None.
    pub fn of_file_name(name: &str) -> Option<Cause> {
        let n = name.to_ascii_lowercase();
        match (n.contains("bacteria"), n.contains("virus")) {
            (true, false) => Some(Cause::Bacterial),
            (false, true) => Some(Cause::Viral),
            _ => None,
        }
    }
}

pub use crate::config::Task;

/// One image file with its label and the patient it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub path: PathBuf,
    pub label: Class,
    pub patient: String,
    /// For PNEUMONIA films, the cause the file name states (None when it states none).
    #[serde(default)]
    pub cause: Option<Cause>,
}

impl Sample {
    /// A film of `label` at `path`, its cause read from the file name when it is PNEUMONIA.
    pub fn new(path: PathBuf, label: Class, patient: String) -> Self {
        let cause = match label {
            Class::Pneumonia => path.file_name().and_then(|n| n.to_str()).and_then(Cause::of_file_name),
            Class::Normal => None,
        };
        Self { path, label, patient, cause }
    }

    /// The index of this film's class among `task`'s (NORMAL 0; PNEUMONIA 1, or BACTERIAL 1 / VIRAL 2). A
    /// PNEUMONIA film without a stated cause counts as BACTERIAL in the three-class task; data preparation
    /// refuses such films first, naming them.
    pub fn target(&self, task: Task) -> usize {
        match (task, self.label, self.cause) {
            (_, Class::Normal, _) => 0,
            (Task::Pneumonia, Class::Pneumonia, _) => 1,
            (Task::ThreeClass, Class::Pneumonia, Some(Cause::Viral)) => 2,
            (Task::ThreeClass, Class::Pneumonia, _) => 1,
        }
    }
}

/// Image counts of one split, per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub normal: usize,
    pub pneumonia: usize,
    /// PNEUMONIA films whose file names say bacterial / viral (the three-class task's classes).
    #[serde(default)]
    pub bacterial: usize,
    #[serde(default)]
    pub viral: usize,
}

impl ClassCounts {
    pub fn of(samples: &[Sample]) -> Self {
        let mut c = Self::default();
        for s in samples {
            c.add(s.label);
            match s.cause {
                Some(Cause::Bacterial) => c.bacterial += 1,
                Some(Cause::Viral) => c.viral += 1,
                None => {}
            }
        }
        c
    }
    /// Counts per class of `task`, in the order of its logits.
    pub fn per_class(&self, task: Task) -> Vec<usize> {
        match task {
            Task::Pneumonia => vec![self.normal, self.pneumonia],
            Task::ThreeClass => vec![self.normal, self.bacterial, self.viral],
        }
    }
    pub fn add(&mut self, class: Class) {
        match class {
            Class::Normal => self.normal += 1,
            Class::Pneumonia => self.pneumonia += 1,
        }
    }
    pub fn get(&self, class: Class) -> usize {
        match class {
            Class::Normal => self.normal,
            Class::Pneumonia => self.pneumonia,
        }
    }
    pub fn total(&self) -> usize {
        self.normal + self.pneumonia
    }
    /// PNEUMONIA images per NORMAL image (the 1:N imbalance); None when there is no NORMAL image.
    pub fn imbalance(&self) -> Option<f64> {
        (self.normal > 0).then(|| self.pneumonia as f64 / self.normal as f64)
    }
}

/// Class counts of the three splits a run trains, validates and tests on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: ClassCounts,
    pub validation: ClassCounts,
    pub test: ClassCounts,
}
