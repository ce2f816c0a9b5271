//! The project's kernels (kernels/: pneumoscope-kernels) compute what the plain definition says: convolutions
//! (im2col/GEMM, Winograd, small-channel direct) forward and backward, max pooling and ReLU with their backward passes,
//! through the backend extension traits the models use, on the CPU backend and through autodiff as training runs
//! them, against references computed element by element.

use burn::backend::Flex;
use burn::tensor::Tensor;

type B = Flex;

/// The kernels as the models call them, in the shape of burn's `module::conv2d` / `max_pool2d` functions.
mod via_kernels {
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Int, Tensor, TensorPrimitive};
    use pneumoscope_kernels::conv::Conv2dKernel;
    use pneumoscope_kernels::pool::{MaxPool2dKernel, PoolOptions};

    pub fn conv2d<B: Conv2dKernel>(
        x: Tensor<B, 4>,
        w: Tensor<B, 4>,
        b: Option<Tensor<B, 1>>,
        o: ConvOptions<2>,
    ) -> Tensor<B, 4> {
        let p = |t: Tensor<B, 4>| t.into_primitive().tensor();
        let b = b.map(|b| b.into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(B::conv2d_kernel(p(x), p(w), b, o)))
    }

    fn options(k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], ceil: bool) -> PoolOptions {
        PoolOptions { kernel: k, stride: s, padding: p, dilation: d, ceil_mode: ceil }
    }

    pub fn max_pool2d<B: MaxPool2dKernel>(
        x: Tensor<B, 4>,
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
        ceil: bool,
    ) -> Tensor<B, 4> {
        let y = B::max_pool2d_kernel(x.into_primitive().tensor(), options(k, s, p, d, ceil));
        Tensor::from_primitive(TensorPrimitive::Float(y))
    }

    pub fn max_pool2d_with_indices<B: MaxPool2dKernel>(
        x: Tensor<B, 4>,
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
        ceil: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 4, Int>) {
        let (y, i) = B::max_pool2d_kernel_with_indices(x.into_primitive().tensor(), options(k, s, p, d, ceil));
        (Tensor::from_primitive(TensorPrimitive::Float(y)), Tensor::from_primitive(i))
    }
}

/// Logical values of a 4-d tensor, row-major.
fn values(t: &Tensor<B, 4>) -> Vec<f32> {
    t.clone().into_data().convert::<f32>().to_vec().unwrap()
}

fn tensor(shape: [usize; 4], offset: f32) -> Tensor<B, 4> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| offset + (i as f32 * 0.37).sin() * 3.0).collect();
    Tensor::<B, 1>::from_floats(v.as_slice(), &Default::default()).reshape(shape)
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{what}[{k}]: {g} vs {w}");
    }
}

#[test]
fn conv2d_with_padding_and_stride_matches_the_definition() {
    use burn::tensor::ops::ConvOptions;
    use via_kernels::conv2d;
    let (n, cin, cout, h, w, k) = (2, 5, 4, 9, 7, 3);
    for (stride, pad) in [(1, 1), (2, 1), (1, 0), (2, 2)] {
        let x = tensor([n, cin, h, w], 0.5);
        let wt = tensor([cout, cin, k, k], -0.25);
        let bias = Tensor::<B, 1>::from_floats([0.1, -0.2, 0.3, 0.0], &Default::default());
        let opts = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
        let got = values(&conv2d(x.clone(), wt.clone(), Some(bias.clone()), opts));
        let (xv, wv, bv) = (values(&x), values(&wt), bias.into_data().to_vec::<f32>().unwrap());
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        let mut want = Vec::new();
        for b in 0..n {
            for co in 0..cout {
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut acc = bv[co];
                        for ci in 0..cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        (y * stride + ky) as isize - pad as isize,
                                        (xo * stride + kx) as isize - pad as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xi = ((b * cin + ci) * h + iy as usize) * w + ix as usize;
                                    acc += xv[xi] * wv[((co * cin + ci) * k + ky) * k + kx];
                                }
                            }
                        }
                        want.push(acc);
                    }
                }
            }
        }
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert_eq!(got.len(), want.len());
        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!((g - e).abs() <= 1e-4 * scale, "stride {stride} pad {pad} [{i}]: {g} vs {e}");
        }
    }
}

/// Geometry of one convolution case: input `[n, cin, h, w]`, `cout` filters of `kh × kw` over `cin / groups`.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
}

impl Case {
    fn out(&self) -> (usize, usize) {
        let o = |i: usize, k: usize| (i + 2 * self.pad - self.dil * (k - 1) - 1) / self.stride + 1;
        (o(self.h, self.kh), o(self.w, self.kw))
    }
    fn options(&self) -> burn::tensor::ops::ConvOptions<2> {
        let (s, p, d) = (self.stride, self.pad, self.dil);
        burn::tensor::ops::ConvOptions::new([s, s], [p, p], [d, d], self.groups)
    }
    /// Calls `f(b, co, oy, ox, ci, ky, kx, x_index)` for every tap that lands inside the input.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize, usize)) {
        let (oh, ow) = self.out();
        let (cig, cog) = (self.cin / self.groups, self.cout / self.groups);
        for b in 0..self.n {
            for co in 0..self.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for cil in 0..cig {
                            let ci = (co / cog) * cig + cil;
                            for ky in 0..self.kh {
                                for kx in 0..self.kw {
                                    let iy = (oy * self.stride + ky * self.dil) as isize - self.pad as isize;
                                    let ix = (ox * self.stride + kx * self.dil) as isize - self.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= self.h as isize || ix >= self.w as isize {
                                        continue;
                                    }
                                    let xi = ((b * self.cin + ci) * self.h + iy as usize) * self.w + ix as usize;
                                    f(b, co, oy, ox, cil, ky, kx, xi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn assert_close_scaled(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!((g - e).abs() <= 1e-4 * scale, "{what} [{i}]: {g} vs {e}");
    }
}

/// The im2col/GEMM kernels (kernels/src/conv/im2col.rs): the forward pass, weight gradient and input gradient of conv2d (grouped:
/// burn-flex's own), through burn's autodiff
/// as training runs them, against the definition, with stride, padding, dilation, groups, rectangular inputs
/// and kernels, bias, and a batch large enough to be split into several im2col chunks.
#[test]
fn conv2d_forward_and_gradients_match_the_definition() {
    use burn::backend::Autodiff;
    use via_kernels::conv2d;
    type A = Autodiff<Flex>;
    let base = Case { n: 2, cin: 6, cout: 4, h: 9, w: 7, kh: 3, kw: 3, stride: 1, pad: 1, dil: 1, groups: 1 };
    let cases = [
        base,
        Case { stride: 2, ..base },
        Case { pad: 0, ..base },
        Case { stride: 2, pad: 2, ..base },
        Case { dil: 2, pad: 2, ..base },
        Case { groups: 2, ..base },
        Case { kh: 5, kw: 2, pad: 2, ..base },
        Case { cin: 3, cout: 8, kh: 7, kw: 7, stride: 2, pad: 3, h: 20, w: 18, ..base },
        // Stride 2 over rows wide enough for im2col's vector gather (35 outputs: two vectors of 16 and a tail).
        Case { cin: 2, cout: 3, h: 5, w: 70, stride: 2, ..base },
        // One image: fewer images than threads, so the forward pass splits the output rows into bands, one per thread.
        Case { n: 1, ..base },
        Case { n: 1, stride: 2, pad: 2, kw: 2, ..base },
        Case { n: 1, h: 15, w: 12, ..base },
        // Few output positions (one row here): the forward pass splits the output channels instead.
        Case { n: 1, h: 3, w: 5, stride: 2, pad: 0, ..base },
        // ResNet's downsampling shortcut: 1×1, stride 2, odd batch.
        Case { n: 3, kh: 1, kw: 1, stride: 2, pad: 0, ..base },
        // Stride 2 without padding on an even input: the last row and column feed no output (zero gradient).
        Case { n: 3, h: 8, w: 8, stride: 2, pad: 0, ..base },
        Case { n: 3, stride: 3, pad: 1, kh: 2, kw: 4, ..base },
        // 72 × 16384 im2col entries per image: several chunks of the 16 MiB budget, the last one shorter.
        Case { n: 5, cin: 8, cout: 3, h: 128, w: 128, ..base },
        // Winograd F(2×2, 3×3): 3×3, stride 1, ≥ 16 channels each way, ≥ 64 output tiles of 2×2):
        // odd and even sizes (a last tile half outside the output), no padding and padding 2, one image, bands
        // that end mid-image and several bands per thread (the 66 × 66 case); deep layers (more weights than
        // transformed data: the whole batch at once, one GEMM per transform point) in the last three.
        Case { n: 4, cin: 16, cout: 16, h: 9, w: 7, ..base },
        Case { n: 6, cin: 17, cout: 20, h: 8, w: 10, pad: 0, ..base },
        Case { n: 4, cin: 16, cout: 24, h: 5, w: 6, pad: 2, ..base },
        Case { n: 1, cin: 16, cout: 16, h: 17, w: 15, ..base },
        Case { n: 3, cin: 32, cout: 16, h: 66, w: 66, ..base },
        Case { n: 4, cin: 128, cout: 128, h: 8, w: 8, ..base },
        Case { n: 4, cin: 128, cout: 160, h: 7, w: 8, ..base },
        Case { n: 16, cin: 128, cout: 128, h: 6, w: 6, pad: 0, ..base },
        // The small-channel kernel (small.rs: ≤ 4 input channels, stride 1): the CNNs' RGB first layer; blocks of 8 columns
        // and 8 output channels ending mid-block; 5×5, 3×1 and 7×7 kernels; one image.
        Case { n: 3, cin: 3, cout: 16, h: 13, w: 21, ..base },
        Case { n: 1, cin: 1, cout: 5, h: 6, w: 9, kh: 5, kw: 5, pad: 2, ..base },
        Case { n: 2, cin: 4, cout: 17, h: 10, w: 8, kw: 1, pad: 0, ..base },
        Case { n: 2, cin: 2, cout: 9, h: 7, w: 7, kh: 7, kw: 7, pad: 3, ..base },
    ];
    let dev = Default::default();
    for case in cases {
        let (oh, ow) = case.out();
        let x = tensor([case.n, case.cin, case.h, case.w], 0.5);
        let wt = tensor([case.cout, case.cin / case.groups, case.kh, case.kw], -0.25);
        let dy = tensor([case.n, case.cout, oh, ow], 0.1);
        let bias: Vec<f32> = (0..case.cout).map(|i| 0.1 * i as f32 - 0.2).collect();
        let (xv, wv, dyv) = (values(&x), values(&wt), values(&dy));
        let widx = |co: usize, cil: usize, ky: usize, kx: usize| {
            ((co * (case.cin / case.groups) + cil) * case.kh + ky) * case.kw + kx
        };

        let mut want_y: Vec<f32> =
            (0..case.n * case.cout * oh * ow).map(|i| bias[(i / (oh * ow)) % case.cout]).collect();
        let mut want_dw = vec![0f32; wv.len()];
        let mut want_dx = vec![0f32; xv.len()];
        case.for_each_tap(|b, co, oy, ox, cil, ky, kx, xi| {
            let yi = ((b * case.cout + co) * oh + oy) * ow + ox;
            want_y[yi] += xv[xi] * wv[widx(co, cil, ky, kx)];
            want_dw[widx(co, cil, ky, kx)] += dyv[yi] * xv[xi];
            want_dx[xi] += dyv[yi] * wv[widx(co, cil, ky, kx)];
        });

        let xa = Tensor::<A, 4>::from_data(x.into_data(), &dev).require_grad();
        let wa = Tensor::<A, 4>::from_data(wt.into_data(), &dev).require_grad();
        let ba = Tensor::<A, 1>::from_floats(bias.as_slice(), &dev).require_grad();
        let y = conv2d(xa.clone(), wa.clone(), Some(ba.clone()), case.options());
        let got_y: Vec<f32> = y.clone().into_data().to_vec().unwrap();
        assert_close_scaled(&got_y, &want_y, &format!("forward {case:?}"));
        let dya = Tensor::<A, 4>::from_data(dy.into_data(), &dev);
        let grads = (y * dya).sum().backward();
        let got_dw: Vec<f32> = wa.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert_close_scaled(&got_dw, &want_dw, &format!("weight gradient {case:?}"));
        let got_dx: Vec<f32> = xa.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert_close_scaled(&got_dx, &want_dx, &format!("input gradient {case:?}"));
        // The bias gradient, Σ over images and positions of the output gradient per channel.
        let want_db: Vec<f32> =
            (0..case.cout).map(|co| dyv.chunks(oh * ow).skip(co).step_by(case.cout).flatten().sum()).collect();
        let got_db: Vec<f32> = ba.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert_close_scaled(&got_db, &want_db, &format!("bias gradient {case:?}"));
    }
}

/// 2-D max pooling (kernels/src/pool.rs), values and indices, against the definition: 2×2/2, 3×3/2 with padding
/// (ResNet's stem), a non-square kernel, ceil mode (a window hanging off the edge), and ties (first wins).
/// The 2×2/2 fast path (odd sizes here: a row and a column no window covers), pooling without indices
/// (inference) and the backward pass (each output's gradient lands on its window's maximum).
#[test]
fn max_pool2d_matches_the_definition() {
    use burn::backend::Autodiff;
    use via_kernels::{max_pool2d, max_pool2d_with_indices};
    type A = Autodiff<Flex>;
    // (kernel, stride, padding, ceil mode)
    type Pool = ([usize; 2], [usize; 2], [usize; 2], bool);
    let cases: [Pool; 5] = [
        ([2, 2], [2, 2], [0, 0], false),
        ([3, 3], [2, 2], [1, 1], false),
        ([3, 2], [1, 2], [1, 0], false),
        ([2, 2], [2, 2], [0, 0], true),
        ([3, 3], [3, 3], [1, 1], true),
    ];
    let (n, c, h, w) = (2, 3, 9, 7);
    // Quantised values so that windows hold ties.
    let x = tensor([n, c, h, w], 0.0).mul_scalar(2.0).round();
    let xv = values(&x);
    for (k, s, p, ceil) in cases {
        let (y, idx) = max_pool2d_with_indices(x.clone(), k, s, p, [1, 1], ceil);
        let [_, _, oh, ow] = y.dims();
        let out = |i: usize, k: usize, s: usize, p: usize| {
            let span = i + 2 * p - k;
            if ceil {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            }
        };
        assert_eq!((oh, ow), (out(h, k[0], s[0], p[0]), out(w, k[1], s[1], p[1])), "{k:?} {s:?} {p:?} {ceil}");
        let (got, got_idx) = (values(&y), idx.into_data().convert::<i64>().to_vec::<i64>().unwrap());
        assert_eq!(values(&max_pool2d(x.clone(), k, s, p, [1, 1], ceil)), got, "without indices {k:?} {s:?} {ceil}");
        let xa = Tensor::<A, 4>::from_data(x.clone().into_data(), &Default::default()).require_grad();
        let dy = tensor([n, c, oh, ow], 0.3);
        let ya = max_pool2d(xa.clone(), k, s, p, [1, 1], ceil);
        let grads = (ya * Tensor::<A, 4>::from_data(dy.clone().into_data(), &Default::default())).sum().backward();
        let got_dx = xa.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let mut want_dx = vec![0f32; xv.len()];
        for (o, g) in values(&dy).into_iter().enumerate() {
            want_dx[o / (oh * ow) * h * w + got_idx[o] as usize] += g;
        }
        close(&got_dx, &want_dx, &format!("max pool gradient {k:?} {s:?} {p:?} {ceil}"));
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut at) = (f32::NEG_INFINITY, -1i64);
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let iy = (oy * s[0] + ky) as isize - p[0] as isize;
                            let ix = (ox * s[1] + kx) as isize - p[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = xv[plane * h * w + iy as usize * w + ix as usize];
                            if at < 0 || v > best {
                                (best, at) = (v, (iy as usize * w + ix as usize) as i64);
                            }
                        }
                    }
                    let o = (plane * oh + oy) * ow + ox;
                    assert_eq!((got[o], got_idx[o]), (best, at), "{k:?} {s:?} {p:?} {ceil} plane {plane} ({oy}, {ox})");
                }
            }
        }
    }
}

/// The im2col chunks run side by side; the weight gradient's per-chunk partial sums must be added in the same order
/// every time, or training stops being reproducible. Sixteen images large enough for several chunks per thread;
/// the same for Winograd ( 16 channels: several bands per thread, one partial sum per thread).
#[test]
fn conv2d_weight_gradient_is_bit_reproducible() {
    use burn::backend::Autodiff;
    use via_kernels::conv2d;
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let im2col = Case { n: 16, cin: 8, cout: 8, h: 64, w: 64, kh: 3, kw: 3, stride: 1, pad: 1, dil: 1, groups: 1 };
    for case in [im2col, Case { cin: 16, cout: 16, h: 96, w: 96, ..im2col }] {
        let x = tensor([case.n, case.cin, case.h, case.w], 0.5);
        let wt = tensor([case.cout, case.cin, case.kh, case.kw], -0.25);
        let grad = || {
            let xa = Tensor::<A, 4>::from_data(x.clone().into_data(), &dev).require_grad();
            let wa = Tensor::<A, 4>::from_data(wt.clone().into_data(), &dev).require_grad();
            let y = conv2d(xa, wa.clone(), None, case.options());
            let grads = (y.clone() * y).sum().backward();
            let g: Vec<f32> = wa.grad(&grads).unwrap().into_data().to_vec().unwrap();
            g.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let first = grad();
        for round in 1..8 {
            assert_eq!(grad(), first, "{case:?}: round {round} differs from the first");
        }
    }
}

/// Winograd is what runs the models' 3×3 layers: ResNet-34's stride-1 layers and the CNNs' layers from 16
/// channels take the Winograd path for a training batch at 128 px; stride 2, the 3-channel first layers, and one
/// image's small deep maps do not. (The values are checked above; this guards the dispatch.)
#[test]
fn winograd_takes_the_models_stride_1_layers() {
    use burn::tensor::ops::ConvOptions;
    use pneumoscope_kernels::conv::winograd::applies;
    let same = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let strided = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
    for (c, hw) in [(64, 32), (128, 16), (256, 8), (512, 4)] {
        assert!(applies([16, c, hw, hw], [c, c, 3, 3], &same), "ResNet-34 {c} channels at {hw}×{hw}");
    }
    assert!(applies([16, 16, 64, 64], [32, 16, 3, 3], &same), "the CNNs' 16 → 32 layer");
    assert!(!applies([16, 3, 128, 128], [16, 3, 3, 3], &same), "3 input channels");
    assert!(!applies([16, 64, 32, 32], [128, 64, 3, 3], &strided), "stride 2");
    assert!(!applies([16, 64, 32, 32], [64, 64, 1, 1], &same), "1×1");
    assert!(!applies([1, 512, 4, 4], [512, 512, 3, 3], &same), "one image's 4×4 map: 4 tiles");
    assert!(applies([1, 64, 32, 32], [64, 64, 3, 3], &same), "one image's 32×32 map: 256 tiles");
}

/// The small-channel kernel (kernels/src/conv/small.rs): the forward pass of few-input-channel, stride-1 convolutions against the definition
/// — square and rectangular kernels, padding 0–3, widths that end mid-block, output channels that end mid-block,
/// one image, bias — in both builds of the kernel (AVX2 + FMA where the CPU has them, and the baseline one).
#[test]
fn small_channel_convolution_matches_the_definition() {
    use burn::tensor::TensorPrimitive;
    use pneumoscope_kernels::conv::small::{applies, conv2d_forward_baseline, conv2d_weight_backward_baseline};
    use via_kernels::conv2d;
    let case = |n, cin, cout, h, w, kh, kw, pad| Case { n, cin, cout, h, w, kh, kw, stride: 1, pad, dil: 1, groups: 1 };
    for c in [
        case(3, 3, 16, 13, 21, 3, 3, 1),
        case(1, 1, 5, 6, 9, 5, 5, 2),
        case(2, 4, 17, 10, 8, 3, 1, 0),
        case(2, 2, 9, 7, 7, 7, 7, 3),
        case(1, 3, 8, 5, 3, 3, 3, 0),
        case(2, 3, 24, 9, 17, 2, 4, 1),
    ] {
        let x = tensor([c.n, c.cin, c.h, c.w], 0.5);
        let wt = tensor([c.cout, c.cin, c.kh, c.kw], -0.25);
        let bv: Vec<f32> = (0..c.cout).map(|i| 0.1 * i as f32 - 0.3).collect();
        let bias = Tensor::<B, 1>::from_floats(bv.as_slice(), &Default::default());
        assert!(applies(x.dims(), wt.dims(), &c.options()), "{c:?} takes this path");
        let (xv, wv) = (values(&x), values(&wt));
        let (oh, ow) = c.out();
        let mut want = vec![0f32; c.n * c.cout * oh * ow];
        for (i, v) in want.iter_mut().enumerate() {
            *v = bv[(i / (oh * ow)) % c.cout];
        }
        c.for_each_tap(|b, co, oy, ox, ci, ky, kx, xi| {
            want[((b * c.cout + co) * oh + oy) * ow + ox] += xv[xi] * wv[((co * c.cin + ci) * c.kh + ky) * c.kw + kx];
        });
        let got = values(&conv2d(x.clone(), wt.clone(), Some(bias.clone()), c.options()));
        assert_close_scaled(&got, &want, &format!("{c:?}"));
        let prim = |t: Tensor<B, 4>| t.into_primitive().tensor();
        let base = conv2d_forward_baseline(prim(x), prim(wt), Some(bias.into_primitive().tensor()), &c.options());
        let base = values(&Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(base)));
        assert_close_scaled(&base, &want, &format!("{c:?}, baseline build"));
        // The weight gradient's baseline build (the other build runs in conv2d_forward_and_gradients_match_…).
        let dy = tensor([c.n, c.cout, oh, ow], 0.1);
        let dyv = values(&dy);
        let mut want_dw = vec![0f32; wv.len()];
        c.for_each_tap(|b, co, oy, ox, ci, ky, kx, xi| {
            want_dw[((co * c.cin + ci) * c.kh + ky) * c.kw + kx] +=
                dyv[((b * c.cout + co) * oh + oy) * ow + ox] * xv[xi];
        });
        let x = tensor([c.n, c.cin, c.h, c.w], 0.5);
        let dw = conv2d_weight_backward_baseline(prim(x), prim(dy), [c.cout, c.cin, c.kh, c.kw], &c.options());
        let dw = values(&Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(dw)));
        assert_close_scaled(&dw, &want_dw, &format!("{c:?}, weight gradient, baseline build"));
    }
    let same = burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    assert!(applies([16, 3, 128, 128], [16, 3, 3, 3], &same), "the CNNs' first layer");
    assert!(applies([1, 3, 128, 128], [16, 3, 3, 3], &same), "the CNNs' first layer, one image");
    let stem = burn::tensor::ops::ConvOptions::new([2, 2], [3, 3], [1, 1], 1);
    assert!(!applies([16, 3, 128, 128], [64, 3, 7, 7], &stem), "ResNet-34's stem: stride 2");
    assert!(!applies([16, 5, 32, 32], [16, 5, 3, 3], &same), "5 input channels");
}

/// ReLU through its kernel: `max(x, 0)` and, through autodiff, the output gradient where the output is positive —
/// on a tensor of several parallel chunks, in place (the only handle) and copied (another handle kept), and on a
/// transposed view (the backend's own path).
#[test]
fn relu_and_its_gradient_match_the_definition() {
    use burn::backend::Autodiff;
    use pneumoscope_kernels::relu::relu;
    type A = Autodiff<Flex>;
    let shape = [2, 8, 64, 80];
    // Quantised so that some inputs are exactly zero.
    let x = tensor(shape, 0.2).mul_scalar(2.0).round();
    let xv = values(&x);
    assert!(xv.contains(&0.0) && xv.iter().any(|&v| v < 0.0) && xv.iter().any(|&v| v > 0.0));
    let want: Vec<f32> = xv.iter().map(|&v| v.max(0.0)).collect();
    assert_eq!(values(&relu(x.clone())), want, "copied (another handle kept)");
    assert_eq!(values(&relu(tensor(shape, 0.2).mul_scalar(2.0).round())), want, "in place (the only handle)");
    let t = x.clone().swap_dims(2, 3);
    assert_eq!(values(&relu(t.clone())), values(&t.clamp_min(0.0)), "transposed view");

    let xa = Tensor::<A, 4>::from_data(x.into_data(), &Default::default()).require_grad();
    let dy = tensor(shape, -0.4);
    let y = relu(xa.clone());
    assert_eq!(values(&y.clone().inner()), want, "forward under autodiff");
    let grads = (y * Tensor::<A, 4>::from_data(dy.clone().into_data(), &Default::default())).sum().backward();
    let got = xa.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    let want_dx: Vec<f32> = xv.iter().zip(values(&dy)).map(|(&x, g)| if x > 0.0 { g } else { 0.0 }).collect();
    assert_eq!(got, want_dx, "gradient");
}
