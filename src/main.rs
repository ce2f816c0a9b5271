//! The `pneumoscope` binary: parse the command line, run it, map errors to exit codes.
//! Thin on purpose: everything lives in the library.

fn main() {
    let code = pneumoscope::cli::main();
    std::process::exit(code);
}
