//! `data stats`: per split × class counts, channel mix, size range and unreadable files of a data folder.
//! Decodes every file (in parallel) so truncated or corrupt files are found; must not depend on model/train/UI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::image::decode;
use super::layout::{Ignored, Layout, SplitName};
use super::loader::Skipped;
use super::{synth, Class};
use crate::error::Result;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassStats {
    pub files: usize,
    pub readable: usize,
    /// Readable files by channels stored in the file ("1", "3", ...).
    pub channels: BTreeMap<String, usize>,
    pub min_width: Option<u32>,
    pub max_width: Option<u32>,
    pub min_height: Option<u32>,
    pub max_height: Option<u32>,
    pub patients: usize,
    /// Bits per stored value ("8", "16"; a DICOM film's BitsStored) → files.
    #[serde(default)]
    pub bits: BTreeMap<String, usize>,
    /// DICOM films by "modality photometric-interpretation" (e.g. "CR MONOCHROME1") → files.
    #[serde(default)]
    pub dicom: BTreeMap<String, usize>,
    /// PNEUMONIA files by the cause their names state ("bacterial", "viral", "unstated"): the three-class task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub causes: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataStats {
    pub root: PathBuf,
    pub synthetic: bool,
    /// What the folder holds: a user's folder, the built-in small real subset, SYNTHETIC pictures.
    pub source: super::demo::DataSource,
    /// split → class → stats
    pub splits: BTreeMap<String, BTreeMap<String, ClassStats>>,
    pub unreadable: Vec<Skipped>,
    pub ignored: Vec<Ignored>,
    pub warnings: Vec<String>,
}

/// Scans and decodes everything under `root`.
pub fn compute(root: &Path, max_side: u32, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<DataStats> {
    let layout = Layout::scan(root)?;
    let mut stats = DataStats {
        root: layout.root.clone(),
        synthetic: synth::is_synthetic(&layout.root),
        source: super::demo::DataSource::of(&layout.root),
        splits: BTreeMap::new(),
        unreadable: Vec::new(),
        ignored: layout.ignored.clone(),
        warnings: layout.warnings.clone(),
    };
    let all: Vec<(SplitName, &super::Sample)> =
        SplitName::ALL.iter().flat_map(|&sp| layout.split(sp).iter().map(move |s| (sp, s))).collect();
    let total = all.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let infos: Vec<_> = all
        .par_iter()
        .map(|(_, s)| {
            let r = decode(&s.path, max_side).map(|(_, info)| info);
            let dicom = super::dicom::has_dicom_extension(&s.path).then(|| super::dicom::info(&s.path).ok()).flatten();
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            (r, dicom)
        })
        .collect();
    let mut patients: BTreeMap<(String, String), std::collections::BTreeSet<String>> = BTreeMap::new();
    for ((split, sample), (info, dicom)) in all.iter().zip(infos) {
        let entry = stats
            .splits
            .entry(split.folder().to_string())
            .or_default()
            .entry(sample.label.folder().to_string())
            .or_default();
        entry.files += 1;
        if sample.label == Class::Pneumonia {
            let cause = match sample.cause {
                Some(super::Cause::Bacterial) => "bacterial",
                Some(super::Cause::Viral) => "viral",
                None => "unstated",
            };
            *entry.causes.entry(cause.into()).or_default() += 1;
        }
        patients
            .entry((split.folder().to_string(), sample.label.folder().to_string()))
            .or_default()
            .insert(sample.patient.clone());
        match info {
            Ok(info) => {
                entry.readable += 1;
                *entry.channels.entry(info.channels.to_string()).or_default() += 1;
                *entry.bits.entry(info.bits.to_string()).or_default() += 1;
                if let Some(d) = dicom {
                    *entry.dicom.entry(format!("{} {}", d.modality, d.photometric)).or_default() += 1;
                }
                entry.min_width = Some(entry.min_width.map_or(info.width, |v| v.min(info.width)));
                entry.max_width = Some(entry.max_width.map_or(info.width, |v| v.max(info.width)));
                entry.min_height = Some(entry.min_height.map_or(info.height, |v| v.min(info.height)));
                entry.max_height = Some(entry.max_height.map_or(info.height, |v| v.max(info.height)));
            }
            Err(e) => stats.unreadable.push(Skipped { path: sample.path.clone(), error: e.to_string() }),
        }
    }
    for ((split, class), set) in patients {
        if let Some(c) = stats.splits.get_mut(&split).and_then(|m| m.get_mut(&class)) {
            c.patients = set.len();
        }
    }
    Ok(stats)
}

impl DataStats {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let source = match self.source.label() {
            "" => "image folder",
            label => label,
        };
        s.push_str(&format!("data: {} — {source}\n\n", self.root.display()));
        s.push_str(&format!(
            "{:<6} {:<10} {:>6} {:>8} {:>9} {:>10}  {:<13} {}\n",
            "split", "class", "files", "readable", "patients", "1ch/3ch", "width", "height"
        ));
        for split in SplitName::ALL {
            let Some(classes) = self.splits.get(split.folder()) else {
                s.push_str(&format!("{:<6} (missing)\n", split.folder()));
                continue;
            };
            for class in Class::ALL {
                let Some(c) = classes.get(class.folder()) else {
                    continue;
                };
                let ch = |k: &str| c.channels.get(k).copied().unwrap_or(0);
                let other: usize = c.channels.iter().filter(|(k, _)| *k != "1" && *k != "3").map(|(_, v)| v).sum();
                let mix = if other > 0 {
                    format!("{}/{}+{}", ch("1"), ch("3"), other)
                } else {
                    format!("{}/{}", ch("1"), ch("3"))
                };
                let range = |a: Option<u32>, b: Option<u32>| match (a, b) {
                    (Some(a), Some(b)) => format!("{a}–{b}"),
                    _ => "-".into(),
                };
                s.push_str(&format!(
                    "{:<6} {:<10} {:>6} {:>8} {:>9} {:>10}  {:<13} {}\n",
                    split.folder(),
                    class.folder(),
                    c.files,
                    c.readable,
                    c.patients,
                    mix,
                    range(c.min_width, c.max_width),
                    range(c.min_height, c.max_height)
                ));
            }
            if let Some(c) = classes.get(Class::Pneumonia.folder()).filter(|c| !c.causes.is_empty()) {
                let n = |k: &str| c.causes.get(k).copied().unwrap_or(0);
                s.push_str(&format!(
                    "{:<6} PNEUMONIA by cause (file names; --task three-class): bacterial {}, viral {}{}\n",
                    "",
                    n("bacterial"),
                    n("viral"),
                    if n("unstated") > 0 { format!(", unstated {}", n("unstated")) } else { String::new() }
                ));
            }
            let n = |k: Class| classes.get(k.folder()).map(|c| c.readable).unwrap_or(0);
            if n(Class::Normal) > 0 {
                s.push_str(&format!(
                    "{:<6} imbalance NORMAL:PNEUMONIA = 1:{:.2}\n",
                    "",
                    n(Class::Pneumonia) as f64 / n(Class::Normal) as f64
                ));
            }
        }
        // Bit depths and DICOM headers, where there is more than 8-bit JPEG/PNG to tell.
        for split in SplitName::ALL {
            for class in Class::ALL {
                let Some(c) = self.splits.get(split.folder()).and_then(|m| m.get(class.folder())) else {
                    continue;
                };
                if c.dicom.is_empty() && c.bits.keys().all(|b| b == "8") {
                    continue;
                }
                let list = |m: &BTreeMap<String, usize>, unit: &str| {
                    m.iter().map(|(k, n)| format!("{k}{unit} ×{n}")).collect::<Vec<_>>().join(", ")
                };
                let mut line = format!("{:<6} {:<10} bits {}", split.folder(), class.folder(), list(&c.bits, "-bit"));
                if !c.dicom.is_empty() {
                    line.push_str(&format!(" · DICOM {}", list(&c.dicom, "")));
                }
                s.push_str(&format!("{line}\n"));
            }
        }
        if !self.unreadable.is_empty() {
            s.push_str(&format!("\nunreadable files ({}, skipped when training):\n", self.unreadable.len()));
            for u in &self.unreadable {
                s.push_str(&format!("  {}: {}\n", u.path.display(), u.error));
            }
        }
        if !self.ignored.is_empty() {
            s.push_str(&format!("\nignored files ({}):\n", self.ignored.len()));
            for u in &self.ignored {
                s.push_str(&format!("  {}: {}\n", u.path.display(), u.reason));
            }
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }
}
