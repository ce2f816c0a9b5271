//! The `pneumoscope` binary: parse the command line, run it, map errors to exit codes.
//! Thin on purpose: everything lives in the library.

// mimalloc keeps freed pages for reuse: decoding and training allocate many large short-lived buffers, which
// with the system allocator cost an mmap + page faults each time and serialise threads (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (its index in `mi_option_e`, include/mimalloc.h; libmimalloc-sys names
/// no constant for it): how long freed memory waits before it is returned to the OS; -1 never returns it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // A training step frees and reallocates the same multi-MB activations every step. Returned to the OS, each
    // comes back as fresh pages the kernel zeroes on first touch, on the one thread that allocates them: 60,000
    // page faults and ~8 % of a ResNet-34 step at 128 px. Kept, they are reused; the peak (what `bench` reports)
    // stays the peak (docs/benchmarks.md). MIMALLOC_PURGE_DELAY in the environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; any value is valid and takes effect on later frees.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    let code = pneumoscope::commands::main();
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    /// The index names the purge delay of the mimalloc the lock file pins: its documented default is 1000 ms in
    /// v3 (10 ms in v2).
    #[test]
    fn the_purge_delay_option_is_the_one_we_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let value = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(value, 1000, "mi_option {} is not mimalloc's purge_delay", super::MI_OPTION_PURGE_DELAY);
        }
    }
}
