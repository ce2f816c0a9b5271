//! Times training-mode BatchNorm (`pneumoscope_kernels::batch_norm`, forward + backward through autodiff, with the
//! sum and gradient read-out around it) at the regularized CNN's nine BatchNorm shapes, batch 16, on the CPU
//! backend. A profiling aid, not a test: `cargo run --release --example batch_norm_time`.
use burn::backend::{Autodiff, Flex};
use burn::nn::BatchNormConfig;
use burn::tensor::{Distribution, Tensor};
use pneumoscope_kernels::batch_norm::batch_norm;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type A = Autodiff<Flex>;

fn main() {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let dev = Default::default();
    let mut total = 0.0;
    for (c, hw) in [(16, 128), (32, 64), (32, 64), (64, 32), (64, 32), (128, 16), (128, 16), (256, 8), (256, 8)] {
        let bn = BatchNormConfig::new(c).init::<A>(&dev);
        let x = Tensor::<A, 4>::random([16, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let step = || {
            let g = batch_norm(&bn, x.clone()).sum().backward();
            let _ = x.grad(&g).map(|t| t.into_data());
        };
        for _ in 0..2 {
            step();
        }
        let t = Instant::now();
        for _ in 0..10 {
            step();
        }
        let ms = t.elapsed().as_secs_f64() / 10.0 * 1e3;
        total += ms;
        println!("{c:4}x{hw:<4} {ms:6.2} ms");
    }
    println!("total {total:.2} ms (forward+backward per batch)");
}
