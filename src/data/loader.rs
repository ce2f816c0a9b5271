//! Decoded-image cache and batching: images are decoded once (in parallel) and kept resized in memory;
//! each epoch a prefetch thread shuffles, augments and normalises batches ahead of the trainer.
//! Must not depend on model, train or front-ends (batches are plain `Vec<f32>`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::{apply_into, Augment};
use super::image::{load_prepared, Prepared};
use super::{Class, ClassCounts, Sample};

/// A file that could not be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub path: std::path::PathBuf,
    pub error: String,
}

/// Samples with their decoded, resized pixels (the in-memory cache every epoch reads from).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub images: Vec<Arc<Prepared>>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.samples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
    pub fn counts(&self) -> ClassCounts {
        ClassCounts::of(&self.samples)
    }
    /// True for each PNEUMONIA sample, in order.
    pub fn truth(&self) -> Vec<bool> {
        self.samples.iter().map(|s| s.label == Class::Pneumonia).collect()
    }
    /// Each sample's class index under `task`, in order.
    pub fn targets(&self, task: super::Task) -> Vec<usize> {
        self.samples.iter().map(|s| s.target(task)).collect()
    }
    /// The same samples seen through a fixed augmentation view (test-time augmentation); the identity view
    /// shares the decoded pixels.
    pub fn viewed(&self, view: &super::augment::Draw) -> Dataset {
        if *view == super::augment::Draw::IDENTITY {
            return self.clone();
        }
        let images = self.images.par_iter().map(|img| Arc::new(super::augment::view(img, view).into_owned())).collect();
        Dataset { samples: self.samples.clone(), images }
    }

    /// Keeps the given positions (in that order), sharing the decoded pixels.
    pub fn subset(&self, positions: &[usize]) -> Dataset {
        Dataset {
            samples: positions.iter().map(|&i| self.samples[i].clone()).collect(),
            images: positions.iter().map(|&i| self.images[i].clone()).collect(),
        }
    }
}

/// Decodes and resizes every sample in parallel. Files that fail are skipped and returned with the reason;
/// `progress(done, total)` is called as files complete.
pub fn preload(
    samples: &[Sample],
    size: usize,
    max_side: u32,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> (Dataset, Vec<Skipped>) {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = samples.len();
    let results: Vec<Result<Prepared, String>> = samples
        .par_iter()
        .map(|s| {
            let r = load_prepared(&s.path, size, max_side).map(|(p, _)| p).map_err(|e| e.to_string());
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            r
        })
        .collect();
    let mut ds = Dataset::default();
    let mut skipped = Vec::new();
    for (s, r) in samples.iter().zip(results) {
        match r {
            Ok(img) => {
                ds.samples.push(s.clone());
                ds.images.push(Arc::new(img));
            }
            Err(error) => skipped.push(Skipped { path: s.path.clone(), error }),
        }
    }
    (ds, skipped)
}

/// How an epoch's batches are made.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    pub batch_size: usize,
    /// Shuffle the order each epoch (training) or keep it (evaluation).
    pub shuffle: bool,
    /// Random augmentation of each image (evaluation: none).
    pub augment: Augment,
    pub seed: u64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Drop a final batch of a single image (BatchNorm cannot estimate statistics from one sample).
    pub drop_single: bool,
    /// Batches made ahead of the consumer.
    pub prefetch: usize,
    /// Draw every class equally often (with replacement) instead of every image once.
    pub balanced: bool,
    /// Which classes the labels are (NORMAL/PNEUMONIA, or NORMAL/BACTERIAL/VIRAL).
    pub task: super::Task,
}

/// One batch, ready to become a tensor: `images` is N×3×S×S, row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    /// Positions of the batch's images in the dataset.
    pub indices: Vec<usize>,
    pub image_size: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The batches of one epoch, produced by a prefetch thread. Dropping it stops the thread.
pub struct Batches {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    count: usize,
    waited: Duration,
}

impl Batches {
    /// Number of batches in the epoch.
    pub fn count(&self) -> usize {
        self.count
    }
    /// Time the consumer spent blocked waiting for the next batch so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Iterator for Batches {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        let start = Instant::now();
        let b = self.rx.as_ref()?.recv().ok();
        self.waited += start.elapsed();
        b
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.rx.take(); // disconnects: the producer's next send fails and it returns
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The order of one epoch: positions grouped into batches.
pub fn epoch_order(len: usize, spec: &BatchSpec, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    if spec.shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_mul(0x9E37_79B9).wrapping_add(epoch as u64));
        order.shuffle(&mut rng);
    }
    into_batches(order, spec)
}

/// The batches of one epoch of `ds`: `epoch_order`, or with `spec.balanced` as many draws as images, each
/// picking a class with equal chance and then one of its images uniformly (seeded by seed and epoch).
pub fn epoch_batches(ds: &Dataset, spec: &BatchSpec, epoch: usize) -> Vec<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); spec.task.classes()];
    for (i, s) in ds.samples.iter().enumerate() {
        by_class[s.target(spec.task)].push(i);
    }
    if !spec.balanced || by_class.iter().any(|c| c.is_empty()) {
        return epoch_order(ds.len(), spec, epoch);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_mul(0xBA1A_4CED).wrapping_add(epoch as u64));
    let order = (0..ds.len())
        .map(|_| {
            let class = &by_class[rng.random_range(0..by_class.len())];
            class[rng.random_range(0..class.len())]
        })
        .collect();
    into_batches(order, spec)
}

fn into_batches(order: Vec<usize>, spec: &BatchSpec) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = order.chunks(spec.batch_size.max(1)).map(|c| c.to_vec()).collect();
    if spec.drop_single && batches.len() > 1 && batches.last().map(|b| b.len()) == Some(1) {
        batches.pop();
    }
    batches
}

/// Assembles one batch (augment + normalise in parallel).
pub fn assemble(ds: &Dataset, indices: &[usize], spec: &BatchSpec, epoch: usize) -> Batch {
    let size = ds.images.first().map(|i| i.size).unwrap_or(0);
    let plane = 3 * size * size;
    let mut images = vec![0.0f32; indices.len() * plane];
    images.par_chunks_mut(plane.max(1)).zip(indices.par_iter()).for_each(|(out, &i)| {
        let img = &ds.images[i];
        let draw = spec.augment.draw(spec.seed, epoch, i, img.size);
        apply_into(img, &draw, spec.mean, spec.std, out);
    });
    let labels = indices.iter().map(|&i| ds.samples[i].target(spec.task) as i64).collect();
    Batch { images, labels, indices: indices.to_vec(), image_size: size }
}

/// Starts the prefetch thread for one epoch.
pub fn batches(ds: Arc<Dataset>, spec: &BatchSpec, epoch: usize) -> Batches {
    let order = epoch_batches(&ds, spec, epoch);
    let count = order.len();
    let (tx, rx) = bounded(spec.prefetch.max(1));
    let spec = spec.clone();
    let handle = std::thread::Builder::new()
        .name("pneumoscope-loader".into())
        .spawn(move || {
            for idx in order {
                let batch = assemble(&ds, &idx, &spec, epoch);
                if tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the loader thread");
    Batches { rx: Some(rx), handle: Some(handle), count, waited: Duration::ZERO }
}

/// Per-class inverse-frequency weights of `task`'s classes, normalised to mean 1 over balanced data
/// (`class_weights = "balanced"`: total / (classes × count)).
pub fn balanced_weights(counts: ClassCounts, task: super::Task) -> Vec<f32> {
    let per_class = counts.per_class(task);
    let total: usize = per_class.iter().sum();
    let k = per_class.len() as f32;
    per_class.iter().map(|&n| if n == 0 { 1.0 } else { total as f32 / (k * n as f32) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Task;
    use std::path::PathBuf;

    fn toy(n: usize) -> Dataset {
        let mut ds = Dataset::default();
        for i in 0..n {
            ds.samples.push(Sample::new(
                PathBuf::from(format!("{i}.png")),
                if i % 3 == 0 { Class::Normal } else { Class::Pneumonia },
                format!("p{i}"),
            ));
            let pixels = (0..64).map(|k| ((k * 4 + i) % 256) as u8).collect();
            ds.images.push(Arc::new(Prepared { size: 8, pixels }));
        }
        ds
    }

    fn spec() -> BatchSpec {
        BatchSpec {
            batch_size: 4,
            shuffle: true,
            augment: Augment { rotation_degrees: 90.0, ..Default::default() },
            seed: 5,
            mean: [0.5; 3],
            std: [0.25; 3],
            drop_single: true,
            prefetch: 2,
            balanced: false,
            task: Default::default(),
        }
    }

    #[test]
    fn balanced_sampler_draws_both_classes_equally_often() {
        // 10 NORMAL, 30 PNEUMONIA.
        let samples: Vec<Sample> = (0..40)
            .map(|i| {
                Sample::new(
                    format!("{i}.png").into(),
                    if i < 10 { Class::Normal } else { Class::Pneumonia },
                    i.to_string(),
                )
            })
            .collect();
        let ds = Dataset { samples, images: Vec::new() };
        let s = BatchSpec { balanced: true, ..spec() };
        let mut normal = 0;
        let mut draws = 0;
        for epoch in 0..50 {
            let order: Vec<usize> = epoch_batches(&ds, &s, epoch).concat();
            assert_eq!(order.len(), 40, "as many draws as images");
            normal += order.iter().filter(|&&i| i < 10).count();
            draws += order.len();
        }
        let share = normal as f64 / draws as f64;
        assert!((share - 0.5).abs() < 0.04, "NORMAL share {share}");
        assert_eq!(epoch_batches(&ds, &s, 3), epoch_batches(&ds, &s, 3), "seeded");
        // Without it: each image once, the real 1:3 mix.
        let once: Vec<usize> = epoch_batches(&ds, &spec(), 0).concat();
        assert_eq!(once.iter().filter(|&&i| i < 10).count(), 10);
    }

    #[test]
    fn every_image_once_per_epoch_and_shuffled_per_epoch() {
        let s = spec();
        let e0: Vec<usize> = epoch_order(10, &s, 0).concat();
        let e1: Vec<usize> = epoch_order(10, &s, 1).concat();
        let mut sorted = e0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(e0, e1, "epochs should be shuffled differently");
        assert_eq!(e0, epoch_order(10, &s, 0).concat(), "same seed and epoch, same order");
        // 9 = 4 + 4 + 1: the single trailing image is dropped for training
        assert_eq!(epoch_order(9, &s, 0).len(), 2);
        let eval = BatchSpec { shuffle: false, drop_single: false, ..s };
        assert_eq!(epoch_order(9, &eval, 0).concat(), (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn batches_are_augmented_per_epoch_and_evaluation_is_not() {
        let ds = toy(8);
        let s = spec();
        let idx = [0, 1, 2, 3];
        assert_eq!(assemble(&ds, &idx, &s, 2).images, assemble(&ds, &idx, &s, 2).images, "seeded");
        assert_ne!(assemble(&ds, &idx, &s, 2).images, assemble(&ds, &idx, &s, 3).images, "redrawn each epoch");
        let plain = BatchSpec { augment: Augment::default(), ..s };
        let b = assemble(&ds, &idx, &plain, 2);
        let mut expected = vec![0.0; 3 * 64];
        crate::data::warp::normalize_into(&ds.images[1], plain.mean, plain.std, &mut expected);
        assert_eq!(&b.images[3 * 64..6 * 64], &expected[..]);
    }

    #[test]
    fn prefetched_batches_match_direct_assembly() {
        let ds = Arc::new(toy(10));
        let s = spec();
        let got: Vec<Batch> = batches(ds.clone(), &s, 1).collect();
        assert_eq!(got.len(), 3);
        for (b, idx) in got.iter().zip(epoch_order(10, &s, 1)) {
            let direct = assemble(&ds, &idx, &s, 1);
            assert_eq!(b.images, direct.images);
            assert_eq!(b.labels, direct.labels);
            assert_eq!(b.images.len(), idx.len() * 3 * 64);
        }
    }

    #[test]
    fn dropping_batches_early_stops_the_thread() {
        let ds = Arc::new(toy(40));
        let mut it = batches(ds, &spec(), 0);
        assert!(it.next().is_some());
        drop(it); // must not hang
    }

    #[test]
    fn balanced_weights_are_inverse_frequency() {
        let w = balanced_weights(ClassCounts { normal: 100, pneumonia: 300, ..Default::default() }, Task::Pneumonia);
        assert!((w[0] - 2.0).abs() < 1e-6 && (w[1] - 2.0 / 3.0).abs() < 1e-6);
        // Three classes: 100 / 200 / 100 of 400 → 4/3, 2/3, 4/3.
        let c = ClassCounts { normal: 100, pneumonia: 300, bacterial: 200, viral: 100 };
        let w = balanced_weights(c, Task::ThreeClass);
        assert_eq!(w.len(), 3);
        assert!((w[0] - 4.0 / 3.0).abs() < 1e-6 && (w[1] - 2.0 / 3.0).abs() < 1e-6 && (w[2] - 4.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn three_class_batches_label_the_cause_and_balance_three_ways() {
        // 10 NORMAL, 20 bacterial, 10 viral (named as Kaggle does).
        let mut ds = Dataset::default();
        for i in 0..40 {
            let (name, label) = match i {
                0..10 => (format!("IM-{i:04}-0001.jpeg"), Class::Normal),
                10..30 => (format!("person{i}_bacteria_{i}.jpeg"), Class::Pneumonia),
                _ => (format!("person{i}_virus_{i}.jpeg"), Class::Pneumonia),
            };
            ds.samples.push(Sample::new(name.into(), label, format!("p{i}")));
            ds.images.push(Arc::new(Prepared { size: 4, pixels: vec![0; 16] }));
        }
        assert_eq!(ds.counts().per_class(Task::ThreeClass), vec![10, 20, 10]);
        let s = BatchSpec { task: Task::ThreeClass, augment: Augment::default(), ..spec() };
        let b = assemble(&ds, &[0, 15, 35], &s, 0);
        assert_eq!(b.labels, vec![0, 1, 2]);
        let b2 = assemble(&ds, &[0, 15, 35], &BatchSpec { task: Task::Pneumonia, ..s.clone() }, 0);
        assert_eq!(b2.labels, vec![0, 1, 1]);
        let balanced = BatchSpec { balanced: true, ..s };
        let mut seen = [0usize; 3];
        for e in 0..50 {
            for i in epoch_batches(&ds, &balanced, e).concat() {
                seen[ds.samples[i].target(Task::ThreeClass)] += 1;
            }
        }
        let total: usize = seen.iter().sum();
        for n in seen {
            assert!((n as f64 / total as f64 - 1.0 / 3.0).abs() < 0.03, "{seen:?}");
        }
    }
}
