//! pneumoscope: train, compare and run chest X-ray pneumonia classifiers from the terminal.
//! Layers: data → model → train (an engine that emits events) → front-ends (tui, headless, cli).

pub mod cli;
pub mod config;
pub mod data;
pub mod error;

/// `pneumoscope train`: resolve the plan and run the engine with the TUI or the headless reporter.
pub fn run_train(args: &cli::TrainArgs) -> error::Result<i32> {
    let plan = args.resolve()?;
    println!("{:?}", plan.config.training);
    Ok(0)
}
