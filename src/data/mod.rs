//! The data layer: scanning the Kaggle layout, decoding and preparing images, the split, batching with
//! prefetch and a cache, and the synthetic chest X-ray generator. Must not depend on model, train or front-ends.

pub mod augment;
pub mod demo;
pub mod dicom;
pub mod image;
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

/// One image file with its label and the patient it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub path: PathBuf,
    pub label: Class,
    pub patient: String,
}

/// Image counts of one split, per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub normal: usize,
    pub pneumonia: usize,
}

impl ClassCounts {
    pub fn of(samples: &[Sample]) -> Self {
        let mut c = Self::default();
        for s in samples {
            c.add(s.label);
        }
        c
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
