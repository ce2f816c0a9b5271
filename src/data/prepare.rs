//! A run's data, ready to train on: the folder scanned, split (held-out test, validation, by patient) and every
//! image decoded once into the in-memory cache, with progress and problems reported as they happen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::layout::Layout;
use super::loader::{balanced_weights, preload, Dataset};
use super::split::{self, TestSource};
use super::{Class, Sample, SplitCounts, Task};
use crate::config::{ClassWeights, Config};
use crate::error::Result;

/// What [`prepare`] reports while it works.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Something about the folder worth saying (a missing `test/`, say).
    Warning(String),
    /// A file left out, and why.
    Skipped { path: PathBuf, error: String },
    /// Images decoded so far.
    Progress { done: usize, total: usize },
    /// The splits are ready.
    Ready { counts: SplitCounts, skipped: usize, seconds: f64, test_source: TestSource },
}

/// The data a run trains, validates and tests on, decoded once.
pub struct RunData {
    pub train: Arc<Dataset>,
    pub val: Arc<Dataset>,
    pub test: Arc<Dataset>,
    pub counts: SplitCounts,
    pub skipped: usize,
    pub test_source: TestSource,
}

/// Scans, splits and decodes the data, emitting progress.
pub fn prepare(cfg: &Config, root: &Path, emit: &(dyn Fn(Prepared) + Sync)) -> Result<RunData> {
    let started = Instant::now();
    let layout = Layout::scan(root)?;
    for w in &layout.warnings {
        emit(Prepared::Warning(w.clone()));
    }
    for ig in &layout.ignored {
        emit(Prepared::Skipped { path: ig.path.clone(), error: ig.reason.clone() });
    }
    let plan = split::plan(&layout, &cfg.data);
    let n_train_files = layout.train.len() + layout.val.len();
    let all: Vec<_> = [&plan.train, &plan.validation, &plan.test].into_iter().flatten().cloned().collect();
    check_causes(&all, cfg.data.task, &layout.root)?;
    let d = &cfg.data;
    let (cache, skipped) = preload(&all, d.image_size, d.max_image_side, &|done, total| {
        if done % 16 == 0 || done == total {
            emit(Prepared::Progress { done, total })
        }
    });
    for s in &skipped {
        emit(Prepared::Skipped { path: s.path.clone(), error: s.error.clone() });
    }
    // The decoded images of each planned split (unreadable files drop out of their split).
    let pos_of: std::collections::HashMap<&Path, usize> =
        cache.samples.iter().enumerate().map(|(i, s)| (s.path.as_path(), i)).collect();
    let pick = |v: &[Sample]| -> Dataset {
        cache.subset(&v.iter().filter_map(|s| pos_of.get(s.path.as_path()).copied()).collect::<Vec<_>>())
    };
    let (train, val, test) = (pick(&plan.train), pick(&plan.validation), pick(&plan.test));
    let (tc, vc) = (train.counts(), val.counts());
    let missing = |i: usize| tc.per_class(d.task)[i] + vc.per_class(d.task)[i] == 0;
    if d.task == Task::ThreeClass && (1..3).any(missing) && !missing(0) && tc.pneumonia + vc.pneumonia > 0 {
        anyhow::bail!(
            "the training data under {} has {} readable BACTERIAL and {} readable VIRAL films: data.task = \
             \"three-class\" needs both",
            layout.root.display(),
            tc.bacterial + vc.bacterial,
            tc.viral + vc.viral
        );
    }
    if tc.normal + vc.normal == 0 || tc.pneumonia + vc.pneumonia == 0 {
        anyhow::bail!(
            "the training data under {} has {} readable NORMAL and {} readable PNEUMONIA images \
             ({} files in train/ and val/): both classes are needed",
            layout.root.display(),
            tc.normal + vc.normal,
            tc.pneumonia + vc.pneumonia,
            n_train_files
        );
    }
    if val.is_empty() {
        anyhow::bail!("the validation split is empty: {} has too few images or patients", layout.root.display());
    }
    if test.is_empty() && plan.test_source != TestSource::Folder {
        anyhow::bail!(
            "the held-out test split is empty: {} has too few images or patients for data.test_fraction = {}",
            layout.root.display(),
            d.test_fraction
        );
    }
    let counts = SplitCounts { train: train.counts(), validation: val.counts(), test: test.counts() };
    emit(Prepared::Ready {
        counts,
        skipped: skipped.len(),
        seconds: started.elapsed().as_secs_f64(),
        test_source: plan.test_source,
    });
    Ok(RunData {
        train: Arc::new(train),
        val: Arc::new(val),
        test: Arc::new(test),
        counts,
        skipped: skipped.len(),
        test_source: plan.test_source,
    })
}

/// Class weights for the loss (one per class of `data.task`), from the config and the training split.
pub fn loss_weights(cfg: &Config, data: &RunData) -> Vec<f32> {
    match &cfg.training.class_weights {
        ClassWeights::Balanced => balanced_weights(data.counts.train, cfg.data.task),
        ClassWeights::Explicit(w) => w.clone(),
        ClassWeights::None => vec![1.0; cfg.data.task.classes()],
    }
}

/// The three-class task needs every PNEUMONIA film's cause in its file name: refuses, naming up to three files,
/// when some do not state one.
pub fn check_causes(samples: &[Sample], task: Task, root: &Path) -> Result<()> {
    if task != Task::ThreeClass {
        return Ok(());
    }
    let unnamed: Vec<&Sample> = samples.iter().filter(|s| s.label == Class::Pneumonia && s.cause.is_none()).collect();
    if let Some(first) = unnamed.first() {
        let shown: Vec<String> = unnamed.iter().take(3).map(|s| s.path.display().to_string()).collect();
        anyhow::bail!(
            "data.task = \"three-class\" needs the cause in every PNEUMONIA file name (personNNN_bacteria_M or \
             personNNN_virus_M), and {} of the films under {} state none: {}{} (first: {})",
            unnamed.len(),
            root.display(),
            shown.join(", "),
            if unnamed.len() > 3 { ", …" } else { "" },
            first.path.display()
        );
    }
    Ok(())
}
