//! `pneumoscope bench pipeline`: throughput of the data pipeline — decode+resize of full-size JPEGs (one
//! thread and all threads) and cached batch assembly (augment + normalise). A benchmark, not a test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::data::image::load_prepared;
use crate::data::layout::Layout;
use crate::data::loader::{assemble, epoch_order, preload, BatchSpec};
use crate::data::synth::{generate, SynthSpec};
use crate::error::Result;

#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Number of JPEGs to generate and decode.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// Smallest longer side of the generated JPEGs (the Kaggle files are about 1000–2900 px).
    #[arg(long, default_value_t = 1000)]
    pub min_side: u32,
    /// Largest longer side of the generated JPEGs.
    #[arg(long, default_value_t = 2000)]
    pub max_side: u32,
    /// Model input size to resize to.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Batch size for the assembly benchmark.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Use the images of this data folder instead of generated ones.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineResult {
    pub images: usize,
    pub mean_megapixels: f64,
    pub size: usize,
    pub threads: usize,
    pub decode_only_1_thread_per_sec: f64,
    pub decode_resize_1_thread_per_sec: f64,
    pub decode_resize_all_threads_per_sec: f64,
    pub batch_assembly_images_per_sec: f64,
    pub batch_assembly_ms_per_batch: f64,
}

pub fn pipeline(args: &PipelineArgs) -> Result<PipelineResult> {
    let tmp;
    let root = match &args.data {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            let n = args.images.max(8);
            let spec = SynthSpec { train: n, test: 2, seed: 11, min_side: args.min_side, max_side: args.max_side };
            eprintln!(
                "generating {n} SYNTHETIC JPEGs of {}–{} px in {} …",
                args.min_side,
                args.max_side,
                tmp.0.display()
            );
            generate(&tmp.0, &spec, &|_, _| {})?;
            tmp.0.clone()
        }
    };
    let layout = Layout::scan(&root)?;
    let samples: Vec<_> = layout.train.iter().chain(&layout.val).take(args.images).cloned().collect();
    // Warm the page cache so the figures measure decoding, not the disk.
    let mut pixels = 0u64;
    for s in &samples {
        let bytes = std::fs::read(&s.path)?;
        if let Ok(r) = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format() {
            if let Ok((w, h)) = r.into_dimensions() {
                pixels += w as u64 * h as u64;
            }
        }
    }
    let n = samples.len();
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let t = Instant::now();
    single.install(|| {
        for s in &samples {
            let _ = crate::data::image::decode(&s.path, 30_000);
        }
    });
    let decode_only = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    single.install(|| {
        for s in &samples {
            let _ = load_prepared(&s.path, args.size, 30_000);
        }
    });
    let one = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    samples.par_iter().for_each(|s| {
        let _ = load_prepared(&s.path, args.size, 30_000);
    });
    let all = n as f64 / t.elapsed().as_secs_f64();

    let (ds, _) = preload(&samples, args.size, 30_000, &|_, _| {});
    let ds = Arc::new(ds);
    let spec = BatchSpec {
        batch_size: args.batch_size,
        shuffle: true,
        rotation_degrees: 90.0,
        seed: 1,
        mean: crate::config::IMAGENET_MEAN,
        std: crate::config::IMAGENET_STD,
        drop_single: false,
        prefetch: 4,
    };
    let t = Instant::now();
    let mut assembled = 0;
    let mut batches = 0;
    for epoch in 0..3 {
        for idx in epoch_order(ds.len(), &spec, epoch) {
            let b = assemble(&ds, &idx, &spec, epoch);
            assembled += b.len();
            batches += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(PipelineResult {
        images: n,
        mean_megapixels: pixels as f64 / n.max(1) as f64 / 1e6,
        size: args.size,
        threads: rayon::current_num_threads(),
        decode_only_1_thread_per_sec: decode_only,
        decode_resize_1_thread_per_sec: one,
        decode_resize_all_threads_per_sec: all,
        batch_assembly_images_per_sec: assembled as f64 / secs,
        batch_assembly_ms_per_batch: 1000.0 * secs / batches.max(1) as f64,
    })
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn tempfile_dir() -> Result<TempDir> {
    let p = std::env::temp_dir().join(format!("pneumoscope-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(TempDir(p))
}

impl PipelineResult {
    pub fn render(&self) -> String {
        format!(
            "data pipeline ({} JPEGs, mean {:.2} MP → {} px, {} threads)\n\
             decode only, 1 thread        {:>8.1} images/s\n\
             decode+resize, 1 thread      {:>8.1} images/s\n\
             decode+resize, {} threads     {:>8.1} images/s\n\
             cached batch assembly        {:>8.1} images/s ({:.2} ms per batch, rotation ±90° + normalise)\n",
            self.images,
            self.mean_megapixels,
            self.size,
            self.threads,
            self.decode_only_1_thread_per_sec,
            self.decode_resize_1_thread_per_sec,
            self.threads,
            self.decode_resize_all_threads_per_sec,
            self.batch_assembly_images_per_sec,
            self.batch_assembly_ms_per_batch
        )
    }
}
