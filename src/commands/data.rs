//! `pneumoscope data`: write a SYNTHETIC data set (`synth`), describe a data folder (`stats`), and write the
//! train/validation/test split a run would use (`split`, read by scripts/train_pytorch.py).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{load_config, progress_bar};
use crate::data::{stats, synth};
use crate::error::{exit, ConfigError, Result};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a deterministic SYNTHETIC chest X-ray data set in the Kaggle layout.
    Synth(SynthArgs),
    /// Count images per split and class, channel mix, size range and unreadable files.
    Stats(StatsArgs),
    /// Write the train/validation/test split a run would use (JSON), e.g. for scripts/train_pytorch.py.
    Split(SplitArgs),
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Data folder (default: data.root from the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Config file (default: ./config.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed of the split (overrides data.seed), as `train --seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the JSON ("-" for standard output).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (it receives train/, val/, test/ and a SYNTHETIC marker file).
    #[arg(long)]
    pub out: PathBuf,
    /// Images in train/ and val/ together.
    #[arg(long, default_value_t = 1000)]
    pub train: usize,
    /// Images in test/.
    #[arg(long, default_value_t = 250)]
    pub test: usize,
    /// Generator seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
    /// Smallest longer side of the generated images, in pixels.
    #[arg(long, default_value_t = 320)]
    pub min_side: u32,
    /// Largest longer side of the generated images, in pixels (the real data: 1000–2900).
    #[arg(long, default_value_t = 640)]
    pub max_side: u32,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Data folder (default: data.root from the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Config file (default: ./config.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: DataCommand) -> Result<i32> {
    match command {
        DataCommand::Synth(a) => run_synth(&a),
        DataCommand::Split(a) => run_split(&a),
        DataCommand::Stats(a) => run_stats(&a),
    }
}

fn run_synth(a: &SynthArgs) -> Result<i32> {
    if a.min_side < 16 || a.max_side < a.min_side || a.max_side > 8192 {
        return Err(ConfigError::new(format!(
            "invalid value for `--min-side`/`--max-side`: {}..{} (allowed: 16 ≤ min ≤ max ≤ 8192)",
            a.min_side, a.max_side
        ))
        .into());
    }
    if a.train < 4 || a.test < 2 {
        return Err(
            ConfigError::new("invalid value for `--train`/`--test`: at least 4 training and 2 test images").into()
        );
    }
    let spec =
        synth::SynthSpec { train: a.train, test: a.test, seed: a.seed, min_side: a.min_side, max_side: a.max_side };
    let bar = progress_bar(spec.train as u64 + spec.test as u64, "drawing SYNTHETIC X-rays");
    // Never merge into (or overwrite) an existing data set: the names look like Kaggle's.
    if std::fs::read_dir(&a.out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(ConfigError::new(format!(
            "invalid value for `--out`: {} is not empty; data synth writes only into a new or empty folder \
                 (it never merges into or overwrites an existing data set)",
            a.out.display()
        ))
        .into());
    }
    let s = synth::generate(&a.out, &spec, &|d, _| bar.set_position(d as u64))?;
    bar.finish_and_clear();
    outln!(
            "wrote {} SYNTHETIC chest X-rays ({} patients, {} saved as RGB) to {}\n  train  NORMAL {:>5}  PNEUMONIA {:>5}\n  val    NORMAL {:>5}  PNEUMONIA {:>5}\n  test   NORMAL {:>5}  PNEUMONIA {:>5}",
            s.files, s.patients, s.rgb_files, a.out.display(), s.train[0], s.train[1], s.val[0], s.val[1], s.test[0], s.test[1]
        );
    Ok(exit::OK)
}

fn run_split(a: &SplitArgs) -> Result<i32> {
    let mut cfg = load_config(a.config.as_deref())?;
    if let Some(d) = &a.data {
        cfg.data.root = d.clone();
    }
    if let Some(seed) = a.seed {
        cfg.data.seed = seed;
    }
    let layout = crate::data::layout::Layout::scan(&cfg.data.root)?;
    let plan = crate::data::split::plan(&layout, &cfg.data);
    let json = serde_json::to_string_pretty(&plan.to_json(&layout.root, &cfg.data))?;
    if a.out.as_os_str() == "-" {
        outln!("{json}");
    } else {
        crate::train::checkpoint::write_atomic(&a.out, json.as_bytes())?;
        let c = |v: &[crate::data::Sample]| crate::data::ClassCounts::of(v);
        errln!(
            "wrote {}: train {} · validation {} · test {} images (test: {})",
            a.out.display(),
            c(&plan.train).total(),
            c(&plan.validation).total(),
            c(&plan.test).total(),
            plan.test_source.describe()
        );
    }
    Ok(exit::OK)
}

fn run_stats(a: &StatsArgs) -> Result<i32> {
    let cfg = load_config(a.config.as_deref())?;
    let root = a.data.clone().unwrap_or(cfg.data.root.clone());
    let bar = progress_bar(0, "decoding");
    let st = stats::compute(&root, cfg.data.max_image_side, &|d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", st.render());
    }
    Ok(exit::OK)
}
