//! `pneumoscope bench`: the benchmarks behind docs/benchmarks.md (figures, not tests) — `pipeline` (decoding and
//! batch assembly) and `models` (training and inference speed, latency, peak memory per model and size, each in a
//! child process running `model-one`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{init_threads, load_config};
use crate::bench::{self as measure, ModelSpec, PipelineSpec};
use crate::config::{parse_model, DeviceChoice};
use crate::error::{exit, Result};
use crate::model::ModelKind;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Data pipeline throughput: decode+resize of full-size films (JPEG, PNG, DICOM) and cached batch assembly.
    Pipeline(PipelineArgs),
    /// Models: training and inference images/s, single-image latency, peak memory and loader wait, per size.
    Models(ModelsArgs),
    /// One model at one size (what `bench models` runs in a child process).
    #[command(hide = true)]
    ModelOne(OneArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Number of JPEGs to generate and decode.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// Smallest longer side of the generated JPEGs. With the generator's aspect ratios (0.72–1) the defaults
    /// give 1.0–2.2 megapixel files, the size of most Kaggle films (about 1000–2900 px on the longer side).
    #[arg(long, default_value_t = 1180)]
    pub min_side: u32,
    /// Largest longer side of the generated JPEGs.
    #[arg(long, default_value_t = 1480)]
    pub max_side: u32,
    /// Model input size to resize to.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Batch size for the assembly benchmark.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Use the images of this data folder (JPEG, PNG or DICOM) instead of generated JPEGs.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Rounds of the decode measurements (interleaved); each figure is the median round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Models to measure.
    #[arg(long, value_delimiter = ',', default_value = "simple,regularized,resnet34", value_parser = parse_model)]
    pub models: Vec<ModelKind>,
    /// Square input sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Timed training steps (after one warm-up step) and timed inference batches.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// cpu, cuda or cuda:N (a binary built with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One model at one size, measured in a process of its own (so peak memory is that model's).
#[derive(Debug, Clone, Args)]
pub struct OneArgs {
    #[arg(long, value_parser = parse_model)]
    pub model: ModelKind,
    #[arg(long)]
    pub size: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
}

pub fn run(command: BenchCommand) -> Result<i32> {
    match command {
        BenchCommand::Models(a) => {
            init_threads(load_config(None)?.threads());
            let figs = measure::models(&a.models, &a.sizes, a.batch_size, a.steps, a.device)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&figs)?);
            } else {
                print!("{}", measure::render_models(&figs));
            }
        }
        BenchCommand::ModelOne(a) => {
            init_threads(load_config(None)?.threads());
            let spec =
                ModelSpec { model: a.model, size: a.size, batch_size: a.batch_size, steps: a.steps, device: a.device };
            outln!("{}", serde_json::to_string(&measure::model_one(&spec)?)?);
        }
        BenchCommand::Pipeline(a) => {
            let spec = PipelineSpec {
                images: a.images,
                min_side: a.min_side,
                max_side: a.max_side,
                size: a.size,
                batch_size: a.batch_size,
                data: a.data.clone(),
                repeat: a.repeat,
            };
            let r = measure::pipeline(&spec)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.render());
            }
        }
    }
    Ok(exit::OK)
}
