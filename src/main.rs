//! The `pneumoscope` binary: parse the command line, run it, map errors to exit codes.
//! Thin on purpose: everything lives in the library.

// mimalloc keeps freed pages for reuse: decoding and training allocate many large short-lived buffers, which
// with the system allocator cost an mmap + page faults each time and serialise threads (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = pneumoscope::cli::main();
    std::process::exit(code);
}
