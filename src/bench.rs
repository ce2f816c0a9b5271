//! The measurements behind `pneumoscope bench` (benchmarks, not tests): `pipeline`, the throughput of the data
//! pipeline — decode+resize of full-size films (generated JPEGs, or a data folder's files; one thread and all
//! threads) and cached batch assembly (augment + normalise); `model_one`/`models`, training and inference speed,
//! latency and peak memory per model and size.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::config::DeviceChoice;
use crate::data::image::load_prepared;
use crate::data::layout::Layout;
use crate::data::loader::{assemble, epoch_order, preload, BatchSpec};
use crate::data::synth::{generate, SynthSpec};
use crate::error::Result;
use crate::model::ModelKind;

/// What `bench pipeline` measures (the command line's `commands::bench::PipelineArgs`).
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Number of JPEGs to generate and decode.
    pub images: usize,
    /// Smallest and largest longer side of the generated JPEGs.
    pub min_side: u32,
    pub max_side: u32,
    /// Model input size to resize to.
    pub size: usize,
    /// Batch size for the assembly benchmark.
    pub batch_size: usize,
    /// Use the images of this data folder instead of generated ones.
    pub data: Option<PathBuf>,
    /// Rounds of the decode measurements (interleaved); each figure is the median round.
    pub repeat: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineResult {
    pub images: usize,
    /// Rounds behind each decode figure (the median is reported).
    pub repeat: u32,
    pub mean_megapixels: f64,
    pub size: usize,
    pub threads: usize,
    pub decode_only_1_thread_per_sec: f64,
    pub decode_resize_1_thread_per_sec: f64,
    pub decode_resize_all_threads_per_sec: f64,
    pub batch_assembly_images_per_sec: f64,
    pub batch_assembly_ms_per_batch: f64,
}

pub fn pipeline(args: &PipelineSpec) -> Result<PipelineResult> {
    // The limit training applies by default (data.max_image_side).
    let side_limit = crate::config::DataConfig::default().max_image_side;
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
        let dims = if crate::data::dicom::is_dicom(&bytes) {
            crate::data::dicom::dimensions(&bytes)
        } else {
            image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .ok()
                .and_then(|r| r.into_dimensions().ok())
        };
        if let Some((w, h)) = dims {
            pixels += w as u64 * h as u64;
        }
    }
    let n = samples.len();
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let rate = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        n as f64 / t.elapsed().as_secs_f64()
    };
    let decode_only = || {
        single.install(|| {
            for s in &samples {
                if let Ok(bytes) = std::fs::read(&s.path) {
                    let _ = crate::data::image::with_pixels(&bytes, side_limit, |pixels, _, _, _| pixels.len());
                }
            }
        })
    };
    let one_thread = || {
        single.install(|| {
            for s in &samples {
                let _ = load_prepared(&s.path, args.size, side_limit);
            }
        })
    };
    let all_threads = || {
        samples.par_iter().for_each(|s| {
            let _ = load_prepared(&s.path, args.size, side_limit);
        })
    };
    // Rounds interleave the three figures so that a noisy moment on a shared machine hits all of them alike.
    let (mut decode_rates, mut one_rates, mut all_rates) = (vec![], vec![], vec![]);
    for _ in 0..args.repeat {
        decode_rates.push(rate(&decode_only));
        one_rates.push(rate(&one_thread));
        all_rates.push(rate(&all_threads));
    }
    let (decode_only, one, all) = (median(decode_rates), median(one_rates), median(all_rates));

    let (ds, _) = preload(&samples, args.size, side_limit, &|_, _| {});
    let ds = Arc::new(ds);
    let spec = BatchSpec {
        batch_size: args.batch_size,
        shuffle: true,
        augment: crate::data::augment::Augment { rotation_degrees: 90.0, ..Default::default() },
        seed: 1,
        mean: crate::config::IMAGENET_MEAN,
        std: crate::config::IMAGENET_STD,
        drop_single: false,
        prefetch: 4,
        balanced: false,
        task: Default::default(),
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
        repeat: args.repeat,
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
            "data pipeline ({} files, mean {:.2} MP → {} px, {} threads; decode figures: median of {} rounds)\n\
             decode only, 1 thread        {:>8.1} images/s\n\
             decode+resize, 1 thread      {:>8.1} images/s\n\
             decode+resize, {} threads     {:>8.1} images/s\n\
             cached batch assembly        {:>8.1} images/s ({:.2} ms per batch, rotation ±90° + normalise)\n",
            self.images,
            self.mean_megapixels,
            self.size,
            self.threads,
            self.repeat,
            self.decode_only_1_thread_per_sec,
            self.decode_resize_1_thread_per_sec,
            self.threads,
            self.decode_resize_all_threads_per_sec,
            self.batch_assembly_images_per_sec,
            self.batch_assembly_ms_per_batch
        )
    }
}

/// One model at one size (`bench model-one`, which `bench models` runs in a child process per model and size).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub model: ModelKind,
    pub size: usize,
    pub batch_size: usize,
    /// Timed training steps (after one warm-up step) and timed inference batches.
    pub steps: usize,
    pub device: DeviceChoice,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ModelFigures {
    /// Where it ran: "cpu (burn-flex, N threads, AVX2 conv GEMM)" or "cuda:N".
    #[serde(default)]
    pub device: String,
    pub model: String,
    pub size: usize,
    pub batch_size: usize,
    pub threads: usize,
    pub params: usize,
    pub train_images_per_sec: f64,
    pub train_step_secs: f64,
    pub infer_images_per_sec: f64,
    pub single_image_ms: f64,
    pub peak_rss_mb: f64,
    /// Share of the timed training time spent waiting for the data loader (prefetching, rotation ±90°).
    pub loader_wait_share: f64,
    /// Every training step's time in seconds, the untimed warm-up step first.
    #[serde(default)]
    pub step_secs: Vec<f64>,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Measures one model at one size on the chosen device (CPU, or CUDA in a binary built with it).
pub fn model_one(args: &ModelSpec) -> Result<ModelFigures> {
    let resolved = crate::train::backend::resolve(args.device)?;
    let mut figures = match resolved {
        crate::train::backend::Resolved::Cpu => model_one_on::<crate::train::backend::Cpu>(args, Default::default()),
        #[cfg(feature = "cuda")]
        crate::train::backend::Resolved::Cuda(n) => {
            model_one_on::<crate::train::backend::Gpu>(args, burn::backend::cuda::CudaDevice::new(n))
        }
        #[cfg(not(feature = "cuda"))]
        crate::train::backend::Resolved::Cuda(_) => anyhow::bail!("this binary was built without CUDA support"),
    }?;
    figures.device = resolved.describe();
    Ok(figures)
}

fn model_one_on<B: crate::model::Kernels + pneumoscope_kernels::adam::AdamKernel>(
    args: &ModelSpec,
    device: B::Device,
) -> Result<ModelFigures> {
    use crate::data::image::Prepared;
    use crate::data::loader::{batches, Dataset};
    use crate::data::{Class, Sample};
    use crate::model::Model;
    use crate::train::infer::{probabilities, to_tensors};
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    type AD<B> = Autodiff<B>;

    let kind = args.model;
    let (s, bs, steps) = (args.size, args.batch_size.max(1), args.steps.max(1));
    // Random gray images in the decoded-image cache: the trainer reads them through the real prefetching loader.
    let n = bs * (steps + 1);
    let mut ds = Dataset::default();
    let mut seed = 0x1234_5678u64;
    for i in 0..n {
        let pixels = (0..s * s)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        ds.images.push(Arc::new(Prepared { size: s, pixels }));
        let label = if i % 3 == 0 { Class::Normal } else { Class::Pneumonia };
        ds.samples.push(Sample::new(format!("img{i}").into(), label, format!("p{i}")));
    }
    let ds = Arc::new(ds);
    let cfg = crate::config::Config::default();
    let spec = BatchSpec {
        batch_size: bs,
        shuffle: true,
        augment: crate::data::augment::Augment { rotation_degrees: 90.0, ..Default::default() },
        seed: 1,
        mean: cfg.data.mean,
        std: cfg.data.std,
        drop_single: false,
        prefetch: 4,
        balanced: false,
        task: Default::default(),
    };
    let mut model: Model<AD<B>> = Model::new(kind, 0.5, &device);
    let params = crate::model::trainable_params::<AD<B>, _>(&model);
    let mut optim = crate::train::step::init_optimizer::<AD<B>, _>(&cfg, &model, None);
    let mut it = batches(ds.clone(), &spec, 0);
    let mut waited = std::time::Duration::ZERO;
    let mut done = 0;
    let mut step_secs = Vec::new();
    loop {
        let t = Instant::now();
        let Some(batch) = it.next() else { break };
        let wait = t.elapsed();
        let (m, _, _) = crate::train::step::train_step(
            model,
            &mut optim,
            &batch,
            [1.0, 1.0],
            crate::train::step::StepLr::all(1e-4),
            &device,
        );
        model = m;
        step_secs.push(t.elapsed().as_secs_f64());
        if step_secs.len() > 1 {
            waited += wait;
            done += batch.len();
        }
    }
    // The first step warms caches and allocations up: the figures time the others.
    let timed: f64 = step_secs.iter().skip(1).sum();
    drop(it);
    let valid = model.valid();
    let first = crate::data::loader::assemble(
        &ds,
        &(0..bs).collect::<Vec<_>>(),
        &BatchSpec { shuffle: false, ..spec.clone() },
        0,
    );
    let (x, _) = to_tensors::<B>(&first, &device);
    let _ = probabilities(valid.forward(x.clone()));
    let t = Instant::now();
    for _ in 0..steps {
        let _ = probabilities(valid.forward(x.clone()));
    }
    let infer = (steps * bs) as f64 / t.elapsed().as_secs_f64();
    let one = x.narrow(0, 0, 1);
    let _ = probabilities(valid.forward(one.clone()));
    let mut lat: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = probabilities(valid.forward(one.clone()));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(ModelFigures {
        device: String::new(),
        model: kind.name().into(),
        size: s,
        batch_size: bs,
        threads: rayon::current_num_threads(),
        params,
        train_images_per_sec: done as f64 / timed.max(1e-9),
        train_step_secs: timed / (step_secs.len().max(2) - 1) as f64,
        infer_images_per_sec: infer,
        single_image_ms: lat[lat.len() / 2],
        peak_rss_mb: peak_rss_mb(),
        loader_wait_share: waited.as_secs_f64() / timed.max(1e-9),
        step_secs,
    })
}

/// Runs `model_one` for every model and size, each in a child process of this binary (so that peak memory is
/// that model's).
pub fn models(
    models: &[ModelKind],
    sizes: &[usize],
    batch_size: usize,
    steps: usize,
    device: DeviceChoice,
) -> Result<Vec<ModelFigures>> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for m in models {
        for &s in sizes {
            if !(16..=1024).contains(&s) {
                return Err(
                    crate::error::ConfigError::new(format!("invalid value for `--sizes`: {s} (16 to 1024)")).into()
                );
            }
            eprintln!("measuring {m} at {s} px …");
            let o = std::process::Command::new(&exe)
                .args(["bench", "model-one", "--model", m.name(), "--size", &s.to_string()])
                .args(["--device", &device.to_string()])
                .args(["--batch-size", &batch_size.to_string(), "--steps", &steps.to_string()])
                .stderr(std::process::Stdio::inherit())
                .output()?;
            if !o.status.success() {
                anyhow::bail!("measuring {m} at {s} px failed (exit {:?})", o.status.code());
            }
            out.push(serde_json::from_slice(&o.stdout)?);
        }
    }
    Ok(out)
}

pub fn render_models(figs: &[ModelFigures]) -> String {
    let mut s = format!(
        "{:<12} {:>5} {:>10} {:>9} {:>10} {:>10} {:>9} {:>8}\n",
        "model", "px", "train im/s", "step s", "infer im/s", "1 image ms", "peak MB", "loader"
    );
    for f in figs {
        s.push_str(&format!(
            "{:<12} {:>5} {:>10.2} {:>9.3} {:>10.2} {:>10.1} {:>9.0} {:>7.2}%\n",
            f.model,
            f.size,
            f.train_images_per_sec,
            f.train_step_secs,
            f.infer_images_per_sec,
            f.single_image_ms,
            f.peak_rss_mb,
            100.0 * f.loader_wait_share
        ));
    }
    s
}
