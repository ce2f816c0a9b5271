//! Single-image inference latency of one model at one size on the CPU backend (median of N forward passes, after
//! two warm-up passes), for profiling next to `scripts/bench_pytorch.py`'s latency figure. A profiling aid, not a
//! test: `cargo run --release --example latency -- [SIZE] [MODEL]` (256, resnet34). Env: RUNS (30).
use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use pneumoscope::model::{Model, ModelKind};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let s: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let kind = ModelKind::parse(&std::env::args().nth(2).unwrap_or("resnet34".into())).expect("a model name");
    let runs: usize = std::env::var("RUNS").ok().and_then(|b| b.parse().ok()).unwrap_or(30);
    let dev = Default::default();
    let model: Model<Flex> = Model::new(kind, 0.5, &dev);
    let x = Tensor::<Flex, 4>::random([1, 3, s, s], Distribution::Normal(0.0, 1.0), &dev);
    let mut times: Vec<f64> = (0..runs + 2)
        .map(|_| {
            let t = Instant::now();
            let _ = pneumoscope::train::infer::probabilities(model.forward(x.clone()));
            t.elapsed().as_secs_f64() * 1e3
        })
        .skip(2)
        .collect();
    if std::env::var("VERBOSE").is_ok() {
        println!("{:.1?}", times);
    }
    times.sort_by(f64::total_cmp);
    println!("{} {s}px single image: median {:.2} ms, min {:.2} ms", kind.name(), times[times.len() / 2], times[0]);
}
