//! The command line (clap): one module per command — train, predict, eval, export, runs, view, data, bench —
//! each with its arguments and what it runs; here the parser, the dispatch and the exit code. Front-end only:
//! the commands call into the library and print; the engine never prints.

pub mod bench;
pub mod data;
pub mod eval;
pub mod export;
pub mod predict;
pub mod runs;
pub mod train;
pub mod view;

use std::io::IsTerminal;
use std::path::Path;

use clap::{Parser, Subcommand};

use crate::config::Config;
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
    pub train: train::TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the configured models one after another and evaluate them on the test split.
    Train(train::TrainArgs),
    /// Generate synthetic data or inspect a data folder.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Classify image files (or folders of them) with a trained checkpoint.
    Predict(predict::PredictArgs),
    /// Evaluate a checkpoint on the test split: metrics and confusion matrix.
    Eval(eval::EvalArgs),
    /// Write a model's weights for PyTorch: model.safetensors (PyTorch's names) and model.json (input, classes,
    /// threshold).
    Export(export::ExportArgs),
    /// List past runs: when, data, models, status and each model's best figures.
    Runs(runs::RunsArgs),
    /// Open the dashboard on a finished or interrupted run, without training.
    View(view::ViewArgs),
    /// Benchmarks (figures for docs/benchmarks.md; not tests).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Loads the config file (explicit path, or ./config.toml when present, else defaults).
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new("config.toml").is_file() => Config::load(Path::new("config.toml")),
        None => Ok(Config::default()),
    }
}

/// Sizes rayon's global pool (used by the CPU backend and the data pipeline) once.
pub fn init_threads(n: usize) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
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
    select_gemm()?;
    match cli.command {
        None => train::run(&cli.train),
        Some(Command::Train(a)) => train::run(&a),
        Some(Command::Predict(a)) => predict::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Export(a)) => export::run(&a),
        Some(Command::Runs(a)) => runs::run(&a),
        Some(Command::View(a)) => view::run(&a),
        Some(Command::Data(c)) => data::run(c),
        Some(Command::Bench(c)) => bench::run(c),
    }
}

/// `PNEUMOSCOPE_GEMM=auto|avx2|avx512|amx-bf16`: the instruction set of the convolutions' GEMMs (README, "CPU kernels").
/// Unset or `auto`: AVX-512 on Intel CPUs that have it, AVX2 elsewhere (pneumoscope_kernels::gemm_isa). Public for
/// the examples, which honour the same variable.
pub fn select_gemm() -> Result<()> {
    use pneumoscope_kernels::gemm_isa::{select, GemmChoice};
    let Some(raw) = std::env::var_os("PNEUMOSCOPE_GEMM") else { return Ok(()) };
    let value = raw.to_string_lossy();
    let bad = |why: String| ConfigError::new(format!("PNEUMOSCOPE_GEMM={value}: {why}"));
    let choice = value.parse::<GemmChoice>().map_err(bad)?;
    select(choice).map_err(bad)?;
    Ok(())
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
