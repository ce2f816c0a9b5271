//! The command line (clap): argument structs, config overrides and dispatch to the data, train, predict and
//! eval commands. Front-end only: it calls into the library and prints; the engine never prints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DataConfig, DeviceChoice, IMAGENET_MEAN, IMAGENET_STD, MODEL_NAMES};
use crate::data::{stats, synth};
use crate::error::{exit, exit_code, format_error, ConfigError, Result};

#[derive(Debug, Parser)]
#[command(
    name = "pneumoscope",
    version,
    about = "Train, compare and run chest X-ray pneumonia classifiers (simple CNN, regularized CNN, ResNet-34).",
    long_about = "Train, compare and run chest X-ray pneumonia classifiers (simple CNN, regularized CNN, ResNet-34).\n\n\
        With no command, `pneumoscope` trains (same as `pneumoscope train`). Without a data folder (no --data, and \
        no ./chest_xray) it trains on a small real subset of the Kaggle training radiographs built into it. Point it \
        at the Kaggle \"Chest X-Ray Images (Pneumonia)\" download with --data or data.root in config.toml.\n\n\
        Exit codes: 0 success, 1 runtime error, 2 usage or configuration error, 130 interrupted (work saved).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the configured models one after another and evaluate them on the test split.
    Train(TrainArgs),
    /// Generate synthetic data or inspect a data folder.
    #[command(subcommand)]
    Data(DataCommand),
    /// Classify image files (or folders of them) with a trained checkpoint.
    Predict(PredictArgs),
    /// Evaluate a checkpoint on the test split: metrics and confusion matrix.
    Eval(EvalArgs),
    /// Benchmarks (figures for docs/benchmarks.md; not tests).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Data pipeline throughput: decode+resize of full-size JPEGs and cached batch assembly.
    Pipeline(crate::bench::PipelineArgs),
    /// Models: training and inference images/s, single-image latency, peak memory and loader wait, per size.
    Models(crate::bench::ModelsArgs),
    /// One model at one size (what `bench models` runs in a child process).
    #[command(hide = true)]
    ModelOne(crate::bench::OneArgs),
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A checkpoint written by `pneumoscope train` (runs/<run>/checkpoints/<model>-best.ckpt).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a Grad-CAM overlay per image (<name>-gradcam.png: where the model saw pneumonia) into this folder.
    #[arg(long, value_name = "OUT_DIR")]
    pub heatmap: Option<PathBuf>,
    /// Images (.jpeg, .jpg, .png) or folders holding them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint written by `pneumoscope train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data folder whose test/ split is evaluated (default: data.root from the config).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Config file (for data.root and data.max_image_side).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Test-time augmentation views (1–5) instead of the checkpoint's own (the threshold stays the checkpoint's).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub tta: Option<u8>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args, Default, Clone)]
pub struct TrainArgs {
    /// Print progress lines instead of the dashboard (automatic when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Config file (default: ./config.toml when present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data folder: the Kaggle chest_xray/ folder or its parent (overrides data.root).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Comma-separated models to train, in order: simple, regularized, resnet34.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Epochs per model.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Square input size in pixels.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    /// Seed of the split, shuffling, augmentation and weight initialisation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Peak learning rate of the one-cycle schedule.
    #[arg(long)]
    pub max_lr: Option<f64>,
    /// Folder that receives the run folder (overrides output.runs_dir).
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// torchvision's ImageNet ResNet-34 weights (resnet34-b627a593.pth or a .safetensors export) to fine-tune
    /// from (overrides training.pretrained; also sets ImageNet normalisation).
    #[arg(long, value_name = "PATH")]
    pub pretrained: Option<PathBuf>,
    /// Continue an interrupted run (runs/<timestamp>) with its own settings: finished models are kept, the
    /// others go on from their last checkpoint (weights, optimiser state, schedule position, history).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: a model whose last checkpoint is damaged (truncated, corrupt) trains again from scratch
    /// instead of failing (the damaged file is kept beside it).
    #[arg(long, requires = "resume")]
    pub restart_damaged: bool,
}

/// Loads the config file (explicit path, or ./config.toml when present, else defaults).
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new("config.toml").is_file() => Config::load(Path::new("config.toml")),
        None => Ok(Config::default()),
    }
}

/// What a training run will use after the config file and the command line are merged.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub config: Config,
    /// True when the default data folder is missing and the built-in demo data is used.
    pub demo_default: bool,
    pub no_tui: bool,
    /// The run folder to continue, with the data folder it used.
    pub resume: Option<(PathBuf, PathBuf)>,
    /// With `resume`: retrain models whose last checkpoint is damaged.
    pub restart_damaged: bool,
}

impl TrainArgs {
    /// Applies the flags over the config and validates the result.
    pub fn resolve(&self) -> Result<TrainPlan> {
        if let Some(run) = &self.resume {
            return self.resolve_resume(run);
        }
        let mut cfg = load_config(self.config.as_deref())?;
        if let Some(d) = &self.data {
            cfg.data.root = d.clone();
        }
        if let Some(m) = &self.models {
            let models: Vec<String> = m.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            for name in &models {
                if !MODEL_NAMES.contains(&name.as_str()) {
                    return Err(ConfigError::new(format!(
                        "invalid value for `--models`: `{name}` is not a model (allowed: {})",
                        MODEL_NAMES.join(", ")
                    ))
                    .into());
                }
            }
            cfg.training.models = models;
        }
        if let Some(v) = self.epochs {
            cfg.training.epochs = v;
        }
        if let Some(v) = self.image_size {
            cfg.data.image_size = v;
        }
        if let Some(v) = self.batch_size {
            cfg.training.batch_size = v;
        }
        if let Some(v) = &self.device {
            DeviceChoice::parse(v).map_err(|m| ConfigError::new(format!("invalid value for `--device`: {m}")))?;
            cfg.training.device = v.clone();
        }
        if let Some(v) = self.seed {
            cfg.data.seed = v;
        }
        if let Some(v) = self.max_lr {
            cfg.training.max_lr = v;
        }
        if let Some(v) = &self.runs_dir {
            cfg.output.runs_dir = v.clone();
        }
        if let Some(v) = &self.pretrained {
            cfg.training.pretrained = v.clone();
        }
        // The built-in demo data (and its small profile, unless the flags say otherwise) replaces the default data
        // folder when that does not exist; a folder the user named must exist.
        let demo_default =
            self.data.is_none() && cfg.data.root == DataConfig::default().root && !cfg.data.root.exists();
        if !demo_default && !cfg.data.root.exists() {
            let key = if self.data.is_some() { "`--data`" } else { "`data.root`" };
            return Err(ConfigError::new(format!(
                "invalid value for {key}: data folder {} does not exist",
                cfg.data.root.display()
            ))
            .into());
        }
        if demo_default {
            if self.image_size.is_none() {
                cfg.data.image_size = cfg.demo.image_size;
            }
            if self.epochs.is_none() {
                cfg.training.epochs = cfg.demo.epochs;
            }
        }
        cfg.validate().map_err(|e| {
            // Name the flag when a flag set the bad value.
            let msg = e.message.replace("`training.epochs`", "`--epochs` / `training.epochs`");
            let msg = msg.replace("`data.image_size`", "`--image-size` / `data.image_size`");
            let msg = msg.replace("`training.batch_size`", "`--batch-size` / `training.batch_size`");
            let msg = msg.replace("`training.max_lr`", "`--max-lr` / `training.max_lr`");
            let msg = msg.replace("`training.models`", "`--models` / `training.models`");
            ConfigError::new(msg)
        })?;
        if let Some(p) = cfg.pretrained() {
            if !p.is_file() {
                return Err(ConfigError::new(format!(
                    "invalid value for `--pretrained` / `training.pretrained`: {} is not a file",
                    p.display()
                ))
                .into());
            }
            // The ImageNet backbone expects ImageNet's normalisation.
            if cfg.data.mean != IMAGENET_MEAN || cfg.data.std != IMAGENET_STD {
                errln!("note: pretrained weights given: data.mean/std set to ImageNet's statistics");
                cfg.data.mean = IMAGENET_MEAN;
                cfg.data.std = IMAGENET_STD;
            }
        }
        let no_tui = self.no_tui || !std::io::stdout().is_terminal();
        Ok(TrainPlan { config: cfg, demo_default, no_tui, resume: None, restart_damaged: false })
    }

    /// `--resume RUN_DIR`: the run's saved config and data folder; other settings cannot change mid-run.
    fn resolve_resume(&self, run: &Path) -> Result<TrainPlan> {
        let given: Vec<&str> = [
            ("--config", self.config.is_some()),
            ("--data", self.data.is_some()),
            ("--models", self.models.is_some()),
            ("--epochs", self.epochs.is_some()),
            ("--image-size", self.image_size.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--seed", self.seed.is_some()),
            ("--max-lr", self.max_lr.is_some()),
            ("--runs-dir", self.runs_dir.is_some()),
            ("--pretrained", self.pretrained.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if !given.is_empty() {
            return Err(ConfigError::new(format!(
                "`--resume` continues a run with its own settings; drop {}",
                given.join(", ")
            ))
            .into());
        }
        let cfg_path = run.join("config.toml");
        if !cfg_path.is_file() {
            return Err(ConfigError::new(format!(
                "invalid value for `--resume`: {} is not a pneumoscope run folder (no config.toml)",
                run.display()
            ))
            .into());
        }
        let mut cfg = Config::load(&cfg_path)?;
        if let Some(d) = &self.device {
            DeviceChoice::parse(d).map_err(|m| ConfigError::new(format!("invalid value for `--device`: {m}")))?;
            cfg.training.device = d.clone();
        }
        let data_root = cfg.data.root.clone();
        let no_tui = self.no_tui || !std::io::stdout().is_terminal();
        Ok(TrainPlan {
            config: cfg,
            demo_default: false,
            no_tui,
            resume: Some((run.to_path_buf(), data_root)),
            restart_damaged: self.restart_damaged,
        })
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<crate::error::Interrupted>() {
            // Not an error: the user stopped the run and the work is saved.
            Some(stopped) => {
                errln!("{}", stopped.0);
                exit::INTERRUPTED
            }
            None => {
                errln!("error: {}", format_error(&err));
                exit_code(&err)
            }
        },
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        None => crate::run_train(&cli.train),
        Some(Command::Train(args)) => crate::run_train(&args),
        Some(Command::Predict(a)) => crate::run_predict(&a),
        Some(Command::Eval(a)) => crate::run_eval(&a),
        Some(Command::Bench(BenchCommand::Models(a))) => {
            crate::init_threads(load_config(None)?.threads());
            let figs = crate::bench::models(&a)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&figs)?);
            } else {
                print!("{}", crate::bench::render_models(&figs));
            }
            Ok(exit::OK)
        }
        Some(Command::Bench(BenchCommand::ModelOne(a))) => {
            crate::init_threads(load_config(None)?.threads());
            outln!("{}", serde_json::to_string(&crate::bench::model_one(&a)?)?);
            Ok(exit::OK)
        }
        Some(Command::Bench(BenchCommand::Pipeline(a))) => {
            let r = crate::bench::pipeline(&a)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.render());
            }
            Ok(exit::OK)
        }
        Some(Command::Data(DataCommand::Synth(a))) => {
            if a.min_side < 16 || a.max_side < a.min_side || a.max_side > 8192 {
                return Err(ConfigError::new(format!(
                    "invalid value for `--min-side`/`--max-side`: {}..{} (allowed: 16 ≤ min ≤ max ≤ 8192)",
                    a.min_side, a.max_side
                ))
                .into());
            }
            if a.train < 4 || a.test < 2 {
                return Err(ConfigError::new(
                    "invalid value for `--train`/`--test`: at least 4 training and 2 test images",
                )
                .into());
            }
            let spec = synth::SynthSpec {
                train: a.train,
                test: a.test,
                seed: a.seed,
                min_side: a.min_side,
                max_side: a.max_side,
            };
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
        Some(Command::Data(DataCommand::Split(a))) => {
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
        Some(Command::Data(DataCommand::Stats(a))) => {
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
    }
}

/// An indicatif bar on a terminal (stderr), hidden otherwise.
pub fn progress_bar(len: u64, msg: &str) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(msg.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}
