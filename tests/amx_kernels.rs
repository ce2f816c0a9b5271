//! The convolutions with their GEMMs on AMX tiles (`PNEUMOSCOPE_GEMM=amx-bf16`: bf16 operands, f32 sums) against
//! the same convolutions in f32, forward and both gradients through autodiff as training runs them: Winograd by
//! band (the transformed weight packed once for every band's products), by point, and im2col; output blocks
//! that the tiles write in place and edge blocks that go through a buffer; gradients summed over several bands.
//! The choice of GEMM is per process, so this file holds one test. Skipped (saying so) where the CPU has no AMX.

use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorPrimitive};
use pneumoscope_kernels::conv::winograd::applies;
use pneumoscope_kernels::conv::Conv2dKernel;
use pneumoscope_kernels::gemm_isa::{select, GemmChoice, GemmIsa};

type A = Autodiff<Flex>;

fn conv2d(x: Tensor<A, 4>, w: Tensor<A, 4>, o: ConvOptions<2>) -> Tensor<A, 4> {
    let p = |t: Tensor<A, 4>| t.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(A::conv2d_kernel(p(x), p(w), None, o)))
}

fn tensor(shape: [usize; 4], seed: f32) -> Tensor<A, 4> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i as f32 * 0.37 + seed).sin() * 3.0).fract() * 2.0).collect();
    Tensor::<A, 1>::from_floats(v.as_slice(), &Default::default()).reshape(shape)
}

/// Output, weight gradient and input gradient of one convolution `[n, cin, h, w]` ⊛ `[cout, cin, k, k]`.
fn run(shape: [usize; 4], cout: usize, k: usize, stride: usize, pad: usize) -> [Vec<f32>; 3] {
    let x = tensor(shape, 0.1).require_grad();
    let w = tensor([cout, shape[1], k, k], 0.7).require_grad();
    let y = conv2d(x.clone(), w.clone(), ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1));
    let dy = tensor(y.dims(), 1.3);
    let grads = (y.clone() * dy).sum().backward();
    let v = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
    [v(y.inner()), v(w.grad(&grads).unwrap()), v(x.grad(&grads).unwrap())]
}

#[test]
fn convolutions_on_amx_tiles_match_f32() {
    if !pneumoscope_kernels::amx::supported() {
        eprintln!("skipped: this CPU or OS has no AMX bf16 tiles");
        return;
    }
    // (input, output channels, kernel, stride, padding, whether Winograd takes it on AMX tiles: only the 3×3 layers
    // whose im2col matrix is large, winograd::AMX_IM2COL_COLS, 1.5 M elements per image)
    let cases = [
        // Winograd by band: several bands of the weight gradient on two threads (the second summed onto the first
        // in the tiles), 64 × 64 products written in place, the odd last tile row through the buffer.
        ([3, 32, 77, 78], 64, 3, 1, 1, true),
        // Winograd by band with channels that fill no whole block (every block through the buffer).
        ([1, 16, 106, 106], 24, 3, 1, 1, true),
        // Winograd by point (the transformed weight outweighs the batch: one GEMM per point over all of it).
        ([1, 384, 24, 24], 384, 3, 1, 1, true),
        // im2col: 3×3 stride-1 layers with a small im2col matrix, their tiles packed straight from the input
        // (conv/implicit.rs): one image at a time, in one band and in several bands of rows whose width is no
        // multiple of 16 and whose channels fill no whole block; a batch at a time, 16 positions spanning output
        // rows and images; a 5×5 kernel, and no padding.
        ([4, 32, 32, 32], 32, 3, 1, 1, false),
        ([2, 16, 100, 90], 24, 3, 1, 1, false),
        ([4, 256, 7, 7], 64, 3, 1, 1, false),
        ([3, 8, 13, 11], 16, 5, 1, 2, false),
        ([2, 8, 12, 12], 16, 3, 1, 0, false),
        // Input channels that fill two blocks of the turned kernel (conv2d_x_backward) and part of a third.
        ([2, 40, 9, 10], 16, 3, 1, 1, false),
        // The first layer's three channels (conv/small.rs leaves a batch on AMX tiles to the implicit GEMM).
        ([4, 3, 40, 36], 16, 3, 1, 1, false),
        // ResNet's stride-2 3×3 and 1×1 shortcut layers (im2col written out).
        ([4, 64, 28, 28], 128, 3, 2, 1, false),
        ([4, 64, 28, 28], 128, 1, 2, 0, false),
    ];
    select(GemmChoice::Auto).expect("auto resolves on every CPU");
    let f32_results: Vec<_> = cases.iter().map(|&(s, co, k, st, p, _)| run(s, co, k, st, p)).collect();
    assert_eq!(select(GemmChoice::AmxBf16), Ok(GemmIsa::AmxBf16), "AMX is supported, so it can be chosen");
    // The cases take the path they are there for, and so do the CNNs' 3×3 layers on either side of the limit
    // (32 → 32 at 64 px: im2col; 64 → 64 at 56 px: Winograd).
    let cnn_layers = [([16, 32, 64, 64], 32, 3, 1, 1, false), ([16, 64, 56, 56], 64, 3, 1, 1, true)];
    for (x, co, k, st, p, winograd) in cases.into_iter().chain(cnn_layers) {
        let w = [co, x[1], k, k];
        let taken = applies(x, w, &ConvOptions::new([st; 2], [p; 2], [1, 1], 1));
        assert_eq!(taken, winograd, "{x:?} ⊛ {w:?}, stride {st}, on AMX tiles: Winograd {winograd}");
    }
    for (case, want) in cases.iter().zip(&f32_results) {
        let (s, co, k, st, p, _) = *case;
        let got = run(s, co, k, st, p);
        for (what, (g, w)) in ["output", "weight gradient", "input gradient"].iter().zip(got.iter().zip(want)) {
            assert_eq!(g.len(), w.len());
            let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = g.iter().zip(w).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            // bf16 keeps 8 significant bits: each product is off by up to 2⁻⁸ of itself, and the errors of the
            // sum's terms mostly cancel; a block missed, summed twice or misplaced is off by the values' own size.
            assert!(worst <= 0.04 * scale, "{what} of {case:?}: off by {worst}, values up to {scale}");
            assert!(worst > 0.0, "{what} of {case:?}: identical to f32, so the AMX GEMM did not run");
        }
    }
}
