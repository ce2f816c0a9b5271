//! Training: the engine that runs on a background thread, the events it emits and the commands it takes,
//! the one-cycle schedule, checkpoints and run reports. Must not depend on any front-end (tui, headless, cli).

pub mod adam;
pub mod backend;
pub mod checkpoint;
pub mod engine;
pub mod ensemble;
pub mod events;
pub mod explain;
pub mod infer;
pub mod plots;
pub mod predictor;
pub mod report;
pub mod report_files;
pub mod schedule;

pub use events::{Command, ModelStatus, TrainEvent};
