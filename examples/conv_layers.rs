//! Times conv2d (the project's kernels, as the models run it) forward and forward+backward for each distinct ResNet-34 convolution shape (batch 16) on the CPU
//! backend, for comparison with `scripts/layers_pytorch.py conv SIZE`. A profiling aid, not a test. Env: MODEL=simple
//! or regularized (that CNN's layers instead), BATCH (16), BIAS=1 (convolutions with a bias, as the simple CNN's),
//! PNEUMOSCOPE_GEMM (as for the binary), REPS (5: each figure is the fastest of
//! that many runs).
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Distribution, Tensor};
use pneumoscope_kernels::conv::conv2d;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Flex;
type A = Autodiff<Flex>;
/// (name, C_in, C_out, kernel, stride, padding, input size, how many in ResNet-34)
type Layer = (&'static str, usize, usize, usize, usize, usize, usize, usize);

fn main() {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    pneumoscope::commands::select_gemm().expect("PNEUMOSCOPE_GEMM");
    println!("GEMM: {:?}", pneumoscope_kernels::gemm_isa::current());
    let s: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(128);
    let only: Option<String> = std::env::args().nth(2);
    let layers: Vec<Layer> = vec![
        ("stem", 3, 64, 7, 2, 3, s, 1),
        ("l1", 64, 64, 3, 1, 1, s / 4, 6),
        ("l2a", 64, 128, 3, 2, 1, s / 4, 1),
        ("l2ds", 64, 128, 1, 2, 0, s / 4, 1),
        ("l2", 128, 128, 3, 1, 1, s / 8, 7),
        ("l3a", 128, 256, 3, 2, 1, s / 8, 1),
        ("l3ds", 128, 256, 1, 2, 0, s / 8, 1),
        ("l3", 256, 256, 3, 1, 1, s / 16, 11),
        ("l4a", 256, 512, 3, 2, 1, s / 16, 1),
        ("l4ds", 256, 512, 1, 2, 0, s / 16, 1),
        ("l4", 512, 512, 3, 1, 1, s / 32, 5),
    ];
    // The simple CNN's seven convolutions; the regularized CNN has the same seven and two more.
    let cnn = vec![
        ("c1", 3, 16, 3, 1, 1, s, 1),
        ("c2", 16, 32, 3, 1, 1, s / 2, 1),
        ("c3", 32, 32, 3, 1, 1, s / 2, 1),
        ("c4", 32, 64, 3, 1, 1, s / 4, 1),
        ("c5", 64, 64, 3, 1, 1, s / 4, 1),
        ("c6", 64, 128, 3, 1, 1, s / 8, 1),
        ("c7", 128, 128, 3, 1, 1, s / 8, 1),
    ];
    let layers = match std::env::var("MODEL").as_deref() {
        Ok("simple") => cnn,
        Ok("regularized") => {
            [cnn, vec![("c8", 128, 256, 3, 1, 1, s / 16, 1), ("c9", 256, 256, 3, 1, 1, s / 16, 1)]].concat()
        }
        _ => layers,
    };
    let batch: usize = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(16);
    let dev = Default::default();
    let (mut tot_f, mut tot_b) = (0.0, 0.0);
    for (name, ci, co, k, st, p, hw, cnt) in layers {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let cfg = Conv2dConfig::new([ci, co], [k, k])
            .with_stride([st, st])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(std::env::var_os("BIAS").is_some());
        let conv_a: Conv2d<A> = cfg.init(&dev);
        let conv_b: Conv2d<B> = conv_a.clone().valid();
        let xb = Tensor::<B, 4>::random([batch, ci, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        let xa = Tensor::<A, 4>::from_inner(xb.clone());
        let xa = if name != "stem" && name != "c1" { xa.require_grad() } else { xa };
        let fwd = || {
            let y = conv2d(&conv_b, xb.clone());
            let _ = y.into_data();
        };
        let fb = || {
            let y = conv2d(&conv_a, xa.clone());
            let g = y.sum().backward();
            let _ = conv_a.weight.grad(&g).map(|t| t.into_data());
            if name != "stem" && name != "c1" {
                let _ = xa.grad(&g).map(|t| t.into_data());
            }
        };
        for _ in 0..2 {
            fwd();
            fb();
        }
        // The fastest of REPS runs (5): this 2-core VM's neighbours slow single runs by up to 2×.
        let n: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
        let best = |f: &dyn Fn()| {
            (0..n)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let tf = best(&fwd);
        let tb = best(&fb);
        tot_f += tf * cnt as f64;
        tot_b += tb * cnt as f64;
        println!("{name:5} {ci:4}->{co:4} k{k} s{st} {hw:4}px  fwd {tf:7.2} ms  fwd+bwd {tb:7.2} ms  x{cnt}");
    }
    println!("total fwd {tot_f:.0} ms  fwd+bwd {tot_b:.0} ms");
}
