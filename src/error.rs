//! Error kinds that decide the exit code: configuration/usage errors (2), interruption (130), the rest (1).
//! Must not depend on any other module of the crate.

pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// A bad setting, flag or config file: the message names the key or flag and what is allowed. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// The user stopped the run (Ctrl-C, SIGTERM, SIGHUP) after work was saved. Exit code 130.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interrupted: {0}")]
pub struct Interrupted(pub String);

/// Exit codes the binary uses.
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUNTIME: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INTERRUPTED: i32 = 130;
}

/// One line per cause, the way cargo prints them.
pub fn format_error(err: &anyhow::Error) -> String {
    let mut s = err.to_string();
    for cause in err.chain().skip(1) {
        s.push_str(&format!("\n  caused by: {cause}"));
    }
    s
}

/// Runs `f`, turning a panic inside a third-party crate (burn's record loading, the CUDA runtime) into an `Err`
/// without its message and backtrace reaching the terminal: the caller names the file or device instead.
pub fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = QUIET.lock().unwrap_or_else(|p| p.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r
}

/// Maps an error to the process exit code.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<ConfigError>().is_some() {
        exit::USAGE
    } else if err.downcast_ref::<Interrupted>().is_some() {
        exit::INTERRUPTED
    } else {
        exit::RUNTIME
    }
}

/// Test hooks. `PNEUMOSCOPE_FAILPOINTS=a,b@3` makes the named places fail on purpose, so the tests can check
/// that an error nobody can provoke from outside (a full disk, a diverging loss, a panicking pane) is handled.
/// Known names: `write:<text>` (writes to paths containing <text> fail; `write:<text>#N`: from the Nth such write), `nan-loss@<model>:<step>` (the loss
/// becomes NaN at that model's global step), `panic-render` (the dashboard panics while drawing). Unset in normal use.
pub fn failpoint(name: &str) -> Option<String> {
    let spec = std::env::var("PNEUMOSCOPE_FAILPOINTS").ok()?;
    spec.split(',').find_map(|item| {
        let item = item.trim();
        if item == name {
            Some(String::new())
        } else {
            item.strip_prefix(name).and_then(|rest| rest.strip_prefix(['@', ':'])).map(str::to_string)
        }
    })
}
