//! pneumoscope: train, compare and run chest X-ray pneumonia classifiers from the terminal.
//! Layers: data → model → train (an engine that emits events) → front-ends (tui, headless, commands).

/// `outln!` that ignores a closed or broken stdout (a terminal that went away) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `errln!` that ignores a closed or broken stderr instead of panicking.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod analysis;
pub mod bench;
pub mod commands;
pub mod config;
pub mod data;
pub mod error;
pub mod headless;
pub mod metrics;
pub mod model;
pub mod signals;
pub mod train;
pub mod tui;
