//! SIGINT, SIGTERM and SIGHUP: the first asks the engine to stop after the current batch (work is saved);
//! a second SIGINT/SIGTERM exits at once (files are written atomically, so nothing is left torn).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::Result;
use crate::train::Command;

/// Whether a stop signal arrived.
pub struct StopSignals {
    fired: Arc<AtomicBool>,
}

impl StopSignals {
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

/// Starts a thread that turns stop signals into `Command::Stop`.
pub fn forward_stop_signals(commands: Sender<Command>) -> Result<StopSignals> {
    let fired = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let f = fired.clone();
    std::thread::Builder::new().name("pneumoscope-signals".into()).spawn(move || {
        for sig in signals.forever() {
            f.store(true, Ordering::SeqCst);
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 1 {
                if sig != SIGHUP {
                    errln!("\nstopping after the current batch and saving a checkpoint… (press Ctrl-C again to quit at once)");
                }
                let _ = commands.send(Command::Stop);
            } else if sig != SIGHUP {
                errln!("quitting at once; checkpoints already written are intact");
                std::process::exit(crate::error::exit::INTERRUPTED);
            }
        }
    })?;
    Ok(StopSignals { fired })
}
