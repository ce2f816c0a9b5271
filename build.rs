//! Rebuilds when the built-in real demo subset (assets/demo, embedded by `include_dir!` in src/data/demo.rs)
//! changes: the macro cannot tell cargo which files it read on a stable toolchain.
fn main() {
    println!("cargo:rerun-if-changed=assets/demo/chest_xray");
}
