//! A newcomer's two commands share one build: `cargo run --release` compiles the dependencies once and `cargo test
//! --release` reuses them. That holds only while every dependency gets the same feature set in both commands —
//! one extra feature anywhere under burn (a dev-dependency asking for a crate's default features, say) gives
//! that crate and everything above it a new fingerprint, and the tests rebuild burn (about 6.5 minutes on 2
//! cores). This compares the two resolved feature sets with `cargo tree` (from Cargo.lock).

use std::collections::BTreeMap;
use std::process::Command;

/// Package → its enabled features, as `cargo tree` resolves them for the given dependency kinds.
fn resolved(edges: &str) -> BTreeMap<String, String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args(["tree", "--locked", "--prefix", "none", "-f", "{p}|{f}", "-e", edges])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree -e {edges} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim_end_matches(" (*)");
        if let Some((package, features)) = line.split_once('|') {
            map.insert(package.trim().to_string(), features.trim().to_string());
        }
    }
    map
}

#[test]
fn the_tests_need_no_dependency_built_with_other_features_than_the_binary() {
    let build = resolved("normal,build");
    let test = resolved("normal,build,dev");
    assert!(build.len() > 100, "cargo tree listed only {} packages", build.len());
    let differing: Vec<String> = build
        .iter()
        .filter(|(package, _)| !package.starts_with("pneumoscope "))
        .filter_map(|(package, features)| {
            let in_test = test.get(package)?;
            (in_test != features).then(|| format!("{package}: build [{features}], tests [{in_test}]"))
        })
        .collect();
    assert!(
        differing.is_empty(),
        "these dependencies are built with other features for the tests, so `cargo test --release` rebuilds \
         them and everything above them after `cargo run --release` (give the dev-dependency the normal build's \
         features, or name the crate in [dependencies] with the extra feature):\n{}",
        differing.join("\n")
    );
}
