//! Times the backend ops a simple-CNN training step runs besides the convolutions — bias gradient, ReLU and its
//! backward, 2×2 max pooling and its backward — at the simple CNN's activation shapes (batch 16), called directly
//! on the CPU backend as the autodiff graph calls them (the project's kernels for the bias gradient and pooling), plus ResNet-34's 3×3/2 stem pool. A profiling aid, not a
//! test: `cargo run --release --example simple_ops -- 128`, next to `scripts/layers_pytorch.py ops 128`.
use burn::backend::Flex;
use burn::tensor::ops::{ActivationOps, FloatTensor, FloatTensorOps};
use burn::tensor::{Distribution, Tensor, TensorPrimitive};
use pneumoscope_kernels::conv::Conv2dKernel;
use pneumoscope_kernels::pool::{MaxPool2dKernel, PoolOptions};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type B = Flex;

const POOL2: PoolOptions =
    PoolOptions { kernel: [2, 2], stride: [2, 2], padding: [0, 0], dilation: [1, 1], ceil_mode: false };
const STEM: PoolOptions =
    PoolOptions { kernel: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], ceil_mode: false };

fn time(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e3
}

fn prim<const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    match t.into_primitive() {
        TensorPrimitive::Float(p) => p,
        _ => unreachable!(),
    }
}

fn main() {
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let s: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(128);
    let batch: usize = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(16);
    let dev = Default::default();
    // (channels, size, followed by a pool) for the seven conv layers' outputs
    let shapes = [(16, s, true), (32, s / 2, false), (32, s / 2, true), (64, s / 4, false), (64, s / 4, true)];
    let shapes = [&shapes[..], &[(128, s / 8, false), (128, s / 8, true)]].concat();
    let names = ["bias grad", "relu", "relu grad", "pool", "pool idx", "pool grad"];
    let mut tot = [0.0f64; 6];
    for (c, hw, pool) in shapes {
        let x = Tensor::<B, 4>::random([batch, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        let g = Tensor::<B, 4>::random([batch, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        let bias = prim(Tensor::<B, 1>::zeros([c], &dev));
        let (x, g) = (prim(x), prim(g));
        let n = 10;
        let mut row = [0.0; 6];
        row[0] = time(n, || {
            let _ = B::conv2d_kernel_bias_backward(x.clone(), bias.clone(), g.clone());
        });
        row[1] = time(n, || {
            let _ = B::relu(x.clone());
        });
        row[2] = time(n, || {
            let _ = B::relu_backward(x.clone(), g.clone());
        });
        if pool {
            row[3] = time(n, || {
                let _ = B::max_pool2d_kernel(x.clone(), POOL2);
            });
            row[4] = time(n, || {
                let _ = B::max_pool2d_kernel_with_indices(x.clone(), POOL2);
            });
            let p = B::max_pool2d_kernel_with_indices(x.clone(), POOL2);
            let gp = B::float_mul_scalar(p.0.clone(), 2.0.into());
            row[5] = time(n, || {
                let _ = B::max_pool2d_kernel_backward(x.clone(), POOL2, gp.clone(), p.1.clone());
            });
        }
        for (t, r) in tot.iter_mut().zip(row) {
            *t += r;
        }
        let cells: Vec<String> = names.iter().zip(row).map(|(n, r)| format!("{n} {r:6.2}")).collect();
        println!("{c:4}x{hw:<4} {} ms", cells.join("  "));
    }
    let cells: Vec<String> = names.iter().zip(tot).map(|(n, r)| format!("{n} {r:6.2}")).collect();
    println!("total     {} ms", cells.join("  "));
    // ResNet-34's stem pool: 3×3, stride 2, padding 1 on 64 channels at half the image size.
    let x = prim(Tensor::<B, 4>::random([batch, 64, s / 2, s / 2], Distribution::Normal(0.0, 1.0), &dev));
    let pool = time(10, || {
        let _ = B::max_pool2d_kernel(x.clone(), STEM);
    });
    let pool_idx = time(10, || {
        let _ = B::max_pool2d_kernel_with_indices(x.clone(), STEM);
    });
    println!("ResNet-34 stem pool 3x3/2 on 64x{}: {pool:6.2} ms, with indices {pool_idx:6.2} ms", s / 2);
}
