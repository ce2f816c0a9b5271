//! Times the phases of one training step — forward with the loss, backward, optimiser (Adam with weight decay and
//! clipping, as `train_step`) — for one model at one size, batch 16, on the CPU backend, for comparison with
//! `scripts/layers_pytorch.py phases SIZE`. A profiling aid, not a test:
//! `cargo run --release --example step_phases -- [SIZE] [MODEL]` (128, resnet34). Env: BATCH (16), STEPS (8; the
//! first two are not timed), VERBOSE=1 (each step's times and page faults), BURN_ADAM=1 (burn's Adam, moments created by
//! its first step, instead of the training optimiser, `init_optimizer`), PNEUMOSCOPE_GEMM (as for the binary).
use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use pneumoscope::model::{Model, ModelKind};
use pneumoscope::train::infer::cross_entropy;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type A = Autodiff<Flex>;

fn main() {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    pneumoscope::commands::select_gemm().expect("PNEUMOSCOPE_GEMM");
    println!("GEMM: {:?}", pneumoscope_kernels::gemm_isa::current());
    let s: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(128);
    let kind = ModelKind::parse(&std::env::args().nth(2).unwrap_or("resnet34".into())).expect("a model name");
    let bs: usize = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(16);
    let dev = Default::default();
    let cfg = pneumoscope::config::Config::default();
    let model: Model<A> = Model::new(kind, 0.5, &dev);
    if std::env::var("BURN_ADAM").is_ok() {
        let optim = pneumoscope::train::step::optimizer_config(&cfg).init::<A, Model<A>>();
        run(kind, s, bs, model, optim);
    } else {
        let optim = pneumoscope::train::step::init_optimizer::<A, _>(&cfg, &model, None);
        run(kind, s, bs, model, optim);
    }
}

fn run<O: Optimizer<Model<A>, A>>(kind: ModelKind, s: usize, bs: usize, mut model: Model<A>, mut optim: O) {
    let dev = Default::default();
    let x = Tensor::<A, 4>::random([bs, 3, s, s], Distribution::Normal(0.0, 1.0), &dev);
    let labels: Vec<i64> = (0..bs).map(|i| if i % 3 == 0 { 0 } else { 1 }).collect();
    let y = Tensor::<A, 1, Int>::from_data(TensorData::new(labels, [bs]), &dev);
    let (mut f, mut b, mut o) = (Vec::new(), Vec::new(), Vec::new());
    // CPU time (user + system, all threads) and wall time per phase over the timed steps: how many of the cores each
    // phase keeps busy.
    let (mut cpu, mut wall) = ([0.0f64; 3], [0.0f64; 3]);
    let steps: usize = std::env::var("STEPS").ok().and_then(|b| b.parse().ok()).unwrap_or(8);
    for step in 0..steps {
        let m0 = minflt();
        let c0 = cpu_s();
        let t0 = Instant::now();
        let loss = cross_entropy(model.forward(x.clone()), y.clone(), &[1.0, 1.0]);
        let t1 = Instant::now();
        let c1 = cpu_s();
        let m1 = minflt();
        let grads = loss.backward();
        let t2 = Instant::now();
        let c2 = cpu_s();
        let m2 = minflt();
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(1e-4, model, grads);
        let _ = loss.into_scalar();
        let t3 = Instant::now();
        let c3 = cpu_s();
        let m3 = minflt();
        if std::env::var("VERBOSE").is_ok() {
            println!(
                "step {step}: {:.1} {:.1} {:.1}",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                (t3 - t2).as_secs_f64() * 1e3
            );
            println!("   minor page faults {} {} {}", m1 - m0, m2 - m1, m3 - m2);
        }
        if step >= 2 {
            for (i, (c, t)) in [(c1 - c0, t1 - t0), (c2 - c1, t2 - t1), (c3 - c2, t3 - t2)].into_iter().enumerate() {
                cpu[i] += c;
                wall[i] += t.as_secs_f64();
            }
            f.push((t1 - t0).as_secs_f64() * 1e3);
            b.push((t2 - t1).as_secs_f64() * 1e3);
            o.push((t3 - t2).as_secs_f64() * 1e3);
        }
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, b, o) = (med(f), med(b), med(o));
    println!(
        "{} {s}px batch {bs}: forward {f:.1} ms  backward {b:.1} ms  optimiser {o:.1} ms  total {:.1} ms",
        kind.name(),
        f + b + o
    );
    println!(
        "cores busy (CPU time / wall time): forward {:.2}  backward {:.2}  optimiser {:.2}",
        cpu[0] / wall[0],
        cpu[1] / wall[1],
        cpu[2] / wall[2]
    );
}

/// CPU time of this process so far, all threads, user and system (/proc/self/stat fields 14 and 15, in clock ticks
/// of 10 ms: sum it over several steps).
fn cpu_s() -> f64 {
    (stat_field(14) + stat_field(15)) as f64 / 100.0
}

/// Minor page faults of this process so far (/proc/self/stat, field 10).
fn minflt() -> u64 {
    stat_field(10)
}

/// Field `i` (numbered from 1, as proc(5) does) of /proc/self/stat; 0 where it cannot be read.
fn stat_field(i: usize) -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields 1 and 2 (pid, and the command in parentheses, which may hold spaces) end at the last ')'.
    let after = stat.rsplit(')').next().unwrap_or("");
    after.split_whitespace().nth(i - 3).and_then(|f| f.parse().ok()).unwrap_or(0)
}
