//! Training: the engine that runs on a background thread (engine: spawn, the queue of models; fit: one model's
//! epochs; step: one optimiser step; assess: testing and the ensemble; journal: metrics.jsonl; control: the
//! user's commands), the events it emits, the one-cycle schedule, checkpoints and run reports. Must not depend on any front-end (tui, headless, cli).

pub mod assess;
pub mod backend;
pub mod checkpoint;
pub mod control;
pub mod engine;
pub mod ensemble;
pub mod events;
pub mod explain;
pub mod fit;
pub mod infer;
pub mod journal;
pub mod plots;
pub mod predictor;
pub mod report;
pub mod report_files;
pub mod runs;
pub mod schedule;
pub mod setup;
pub mod step;

pub use events::{CheckpointKind, Command, EvalSplit, ModelStatus, TrainEvent};
