//! A 2D convolution's forward pass, weight gradient and input gradient as
//! im2col + one GEMM per chunk of the batch.
//!
//! With `P = out_h · out_w`, `R = C_in · KH · KW` and `cols` the im2col matrix of a chunk of `nb` images
//! (`[R, nb·P]`, taps in the padding are zero):
//!
//! - forward: `Y = W · cols` (`[C_out, R] · [R, nb·P]`), scattered back to `[nb, C_out, P]`;
//! - weight gradient: `dW = Σ_chunks dYᵀ · colsᵀ` (`[C_out, nb·P] · [nb·P, R]`);
//! - input gradient: `dcols = Wᵀ · dYᵀ` (`[R, C_out] · [C_out, nb·P]`), summed back into `dX` tap by tap
//!   (col2im).
//!
//! burn-backend's defaults ran the weight gradient as a forward convolution whose kernel is the output gradient
//! (a GEMM nine columns wide for a 3×3 kernel) and the input gradient as burn-flex's transposed convolution (one
//! GEMM per image, so the weight is packed again for every image, and a single-threaded, branchy col2im).
//!
//! Parallelism: when the batch has at least as many images as there are threads, chunks (a whole number per
//! thread) run side by side, each with a single-threaded GEMM, its own im2col and its own col2im; on this
//! 2-core machine that beats splitting each GEMM across the threads (gemm's own `Rayon` mode) by 20–40 % on the
//! deep ResNet layers, whose per-image products are small. With fewer images than threads (single-image
//! inference) the forward pass splits each image between the threads by bands of output rows or by output
//! channels, and the gradients run one chunk at a time with gemm's internal parallelism. Chunks keep their
//! im2col buffers within [`COLS_BUDGET`] altogether. Results do not depend on timing: every output element is
//! computed by one task, and the weight gradient's partial sums are added in a fixed order. f32 and f64 run
//! natively; other types fall through to burn-flex (mod.rs).
//!
//! On AMX tiles (f32 with `PNEUMOSCOPE_GEMM=amx-bf16`), stride-1 convolutions on a batch skip `cols`: the forward
//! pass and the weight gradient fill the GEMM's bf16 tiles straight from the input (implicit.rs), and the input
//! gradient is the forward convolution of `dY` with the weight's channels swapped and its kernel turned half a turn.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::conv::calculate_conv_output_size;
use burn_backend::ops::ConvOptions;
use burn_backend::DType;
use burn_std::Shape;

use burn_flex::{FlexTensor, Layout};

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use super::implicit;

/// Largest total size of the im2col buffers in flight, in elements (16 MiB of f32).
const COLS_BUDGET: usize = 4 << 20;

/// The element types the GEMM paths take (f32, f64).
pub trait Scalar:
    burn_backend::Element
    + bytemuck::Pod
    + Default
    + Send
    + Sync
    + core::ops::Add<Output = Self>
    + core::ops::AddAssign
    + 'static
{
}
impl<T> Scalar for T where
    T: burn_backend::Element
        + bytemuck::Pod
        + Default
        + Send
        + Sync
        + core::ops::Add<Output = T>
        + core::ops::AddAssign
        + 'static
{
}

/// Per-thread scratch for the im2col matrix and the GEMM operands, kept between calls: these buffers are fully
/// overwritten before they are read, and allocating them afresh cost a `memset` and first-touch page faults on
/// every call (8 % of a layer's time). At most a few [`COLS_BUDGET`]-sized buffers per thread stay allocated.
#[cfg(feature = "std")]
pub(crate) mod scratch {
    use alloc::vec::Vec;
    use core::cell::RefCell;

    type Pair = RefCell<[Vec<u64>; 2]>;

    std::thread_local! {
        static BUFFERS: Pair = const { RefCell::new([Vec::new(), Vec::new()]) };
        static HELD: Pair = const { RefCell::new([Vec::new(), Vec::new()]) };
    }

    fn view<T: bytemuck::Pod>(buf: &mut Vec<u64>, len: usize) -> &mut [T] {
        let words = (len * core::mem::size_of::<T>()).div_ceil(8);
        if buf.len() < words {
            buf.resize(words, 0);
        }
        &mut bytemuck::cast_slice_mut::<u64, T>(&mut buf[..words])[..len]
    }

    /// Runs `f` with two buffers of the given lengths (contents unspecified). Re-entrant calls on the same
    /// thread (rayon may run another task while one waits) get fresh buffers.
    pub fn with<T: bytemuck::Pod + Default, R>(lens: [usize; 2], f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
        with_in(&BUFFERS, lens, f)
    }

    /// [`with`] from a second pair of buffers, for data a caller holds while the tasks it starts (which use
    /// [`with`]) run: a transformed weight, a whole batch's transformed input, gradient accumulators.
    pub fn with_held<T: bytemuck::Pod + Default, R>(lens: [usize; 2], f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
        with_in(&HELD, lens, f)
    }

    fn with_in<T: bytemuck::Pod + Default, R>(
        key: &'static std::thread::LocalKey<Pair>,
        lens: [usize; 2],
        f: impl FnOnce(&mut [T], &mut [T]) -> R,
    ) -> R {
        let mut f = Some(f);
        let pooled = key.with(|cell| {
            let mut guard = cell.try_borrow_mut().ok()?;
            let [a, b] = &mut *guard;
            let f = f.take().expect("called once");
            Some(f(view(a, lens[0]), view(b, lens[1])))
        });
        match pooled {
            Some(r) => r,
            None => {
                let mut fresh = [Vec::new(), Vec::new()];
                let [a, b] = &mut fresh;
                (f.take().expect("called once"))(view(a, lens[0]), view(b, lens[1]))
            }
        }
    }
}

#[cfg(not(feature = "std"))]
pub(crate) mod scratch {
    use alloc::vec;
    pub fn with<T: bytemuck::Pod + Default, R>(lens: [usize; 2], f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
        let (mut a, mut b) = (vec![T::default(); lens[0]], vec![T::default(); lens[1]]);
        f(&mut a, &mut b)
    }
    pub use with as with_held;
}

struct Geometry {
    c_in: usize,
    in_h: usize,
    in_w: usize,
    kh: usize,
    kw: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(
        [c_in, in_h, in_w]: [usize; 3],
        [kh, kw]: [usize; 2],
        [out_h, out_w]: [usize; 2],
        options: &ConvOptions<2>,
    ) -> Self {
        let (stride, padding, dilation) = (options.stride, options.padding, options.dilation);
        Self { c_in, in_h, in_w, kh, kw, out_h, out_w, stride, padding, dilation }
    }

    fn p(&self) -> usize {
        self.out_h * self.out_w
    }

    fn r(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// For kernel row `ki`: the input row of output row `oh`, if it is inside the input.
    fn in_row(&self, oh: usize, ki: usize) -> Option<usize> {
        let ih = (oh * self.stride[0] + ki * self.dilation[0]) as isize - self.padding[0] as isize;
        (ih >= 0 && ih < self.in_h as isize).then_some(ih as usize)
    }

    /// For kernel column `kj`: the output columns `lo..hi` whose input column `ow·stride + shift` is inside the
    /// input, and `shift`.
    fn valid_cols(&self, kj: usize) -> (usize, usize, isize) {
        let shift = (kj * self.dilation[1]) as isize - self.padding[1] as isize;
        let s = self.stride[1] as isize;
        // lo = first ow with ow·s + shift >= 0; hi = first ow with ow·s + shift >= in_w.
        let first_at_least = |bound: isize| -> isize { ((bound - shift).max(0) + s - 1) / s };
        let lo = first_at_least(0).min(self.out_w as isize) as usize;
        let hi = first_at_least(self.in_w as isize).clamp(lo as isize, self.out_w as isize) as usize;
        (lo, hi, shift)
    }
}

/// How the batch is cut: `chunk` images at a time, chunks side by side on the thread pool (`parallel`, each with a
/// single-threaded GEMM) or one after the other (each GEMM parallel inside).
#[derive(Debug, Clone, Copy)]
struct Plan {
    chunk: usize,
    parallel: bool,
}

pub(crate) fn threads() -> usize {
    #[cfg(feature = "rayon")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "rayon"))]
    1
}

impl Plan {
    /// `per_image`: im2col elements of one image.
    fn new(n: usize, per_image: usize) -> Self {
        let threads = threads();
        let n = n.max(1);
        if threads > 1 && n >= threads {
            let per_chunk_budget = COLS_BUDGET / threads;
            let needed = (n * per_image).div_ceil(per_chunk_budget.max(1));
            // A whole number of chunks per thread, so that no thread idles on the last round.
            let chunks = needed.max(threads).div_ceil(threads) * threads;
            let chunk = n.div_ceil(chunks.min(n));
            Self { chunk, parallel: true }
        } else {
            Self { chunk: (COLS_BUDGET / per_image.max(1)).clamp(1, n), parallel: false }
        }
    }

    fn gemm_parallelism(&self, m: usize, n: usize, k: usize) -> gemm::Parallelism {
        #[cfg(feature = "rayon")]
        if !self.parallel && m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
            return gemm::Parallelism::Rayon(0);
        }
        let _ = (m, n, k);
        gemm::Parallelism::None
    }

    /// Runs `f(b0, nb, out)` for each chunk of images `b0 .. b0 + nb`, where `out` is that chunk's share of
    /// `out` (`per_image_out` elements per image).
    fn for_each_chunk<T: Send>(
        &self,
        n: usize,
        out: &mut [T],
        per_image_out: usize,
        f: impl Fn(usize, usize, &mut [T]) + Send + Sync,
    ) {
        let step = self.chunk * per_image_out;
        let run = |(i, out): (usize, &mut [T])| {
            let b0 = i * self.chunk;
            f(b0, self.chunk.min(n - b0), out)
        };
        if step == 0 {
            return;
        }
        #[cfg(feature = "rayon")]
        if self.parallel {
            use rayon::prelude::*;
            out.par_chunks_mut(step).enumerate().for_each(run);
            return;
        }
        out.chunks_mut(step).enumerate().for_each(run);
    }
}

/// Fills `cols` (`[R, nb·P]`, row-major) for batch items `b0 .. b0 + nb`; taps that fall in the padding are zero.
/// Rows are built in parallel unless the caller already runs chunks side by side.
fn im2col<T: Scalar>(x: &[T], b0: usize, nb: usize, g: &Geometry, cols: &mut [T], parallel_rows: bool) {
    im2col_band(x, b0, nb, g, 0..g.out_h, cols, parallel_rows)
}

/// [`im2col`] for the output rows `band` only: `cols` is `[R, nb·band.len()·out_w]`.
fn im2col_band<T: Scalar>(
    x: &[T],
    b0: usize,
    nb: usize,
    g: &Geometry,
    band: core::ops::Range<usize>,
    cols: &mut [T],
    parallel_rows: bool,
) {
    let p = band.len() * g.out_w;
    let width = nb * p;
    let plane = g.in_h * g.in_w;
    let zero = T::default();
    let fill_row = |row: usize, out: &mut [T]| {
        let ci = row / (g.kh * g.kw);
        let k = row % (g.kh * g.kw);
        let (ki, kj) = (k / g.kw, k % g.kw);
        let (lo, hi, shift) = g.valid_cols(kj);
        for j in 0..nb {
            let src = &x[((b0 + j) * g.c_in + ci) * plane..((b0 + j) * g.c_in + ci + 1) * plane];
            let dst = &mut out[j * p..(j + 1) * p];
            for (i, oh) in band.clone().enumerate() {
                let drow = &mut dst[i * g.out_w..(i + 1) * g.out_w];
                let Some(ih) = g.in_row(oh, ki) else {
                    drow.fill(zero);
                    continue;
                };
                let srow = &src[ih * g.in_w..(ih + 1) * g.in_w];
                drow[..lo].fill(zero);
                drow[hi..].fill(zero);
                if g.stride[1] == 1 {
                    let from = (lo as isize + shift) as usize;
                    drow[lo..hi].copy_from_slice(&srow[from..from + (hi - lo)]);
                } else {
                    let from = ((lo * g.stride[1]) as isize + shift) as usize;
                    every_nth(&mut drow[lo..hi], &srow[from..], g.stride[1]);
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    if parallel_rows {
        use rayon::prelude::*;
        cols.par_chunks_mut(width).enumerate().for_each(|(row, out)| fill_row(row, out));
        return;
    }
    let _ = parallel_rows;
    cols.chunks_mut(width).enumerate().for_each(|(row, out)| fill_row(row, out));
}

/// `dst[i] = src[i · stride]`: a strided row of im2col (the stem's 7 × 7 and the stride-2 layers). Stride 2 runs on
/// AVX-512 where the CPU has it, each vector of the row taken from two loads of the source.
fn every_nth<T: Scalar>(dst: &mut [T], src: &[T], stride: usize) {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if stride == 2 && crate::avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { every_other_avx512(dst, src) };
    }
    every_nth_any(dst, src, stride)
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[target_feature(enable = "avx512f")]
unsafe fn every_other_avx512<T: Scalar>(dst: &mut [T], src: &[T]) {
    every_nth_any(dst, src, 2)
}

#[inline(always)]
fn every_nth_any<T: Scalar>(dst: &mut [T], src: &[T], stride: usize) {
    if stride == 2 {
        // Pairs from the source: a form the compiler turns into vector shuffles.
        let n = dst.len().min(src.len().div_ceil(2));
        let full = n.min(src.len() / 2);
        for (d, pair) in dst[..full].iter_mut().zip(src.chunks_exact(2)) {
            *d = pair[0];
        }
        if full < n {
            dst[full] = src[2 * full];
        }
        return;
    }
    for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
        *d = *s;
    }
}

/// Adds `dcols` (`[R, nb·P]`) back into `dx` (`[nb, C_in, H, W]`, zeroed by the caller) tap by tap: the adjoint
/// of [`im2col`]. Each input plane is owned by one task, so planes run in parallel without conflicts.
fn col2im<T: Scalar>(dcols: &[T], nb: usize, g: &Geometry, dx: &mut [T], parallel_planes: bool) {
    let p = g.p();
    let width = nb * p;
    let plane = g.in_h * g.in_w;
    let taps = g.kh * g.kw;
    let fill_plane = |i: usize, dst: &mut [T]| {
        let (j, ci) = (i / g.c_in, i % g.c_in);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = ci * taps + ki * g.kw + kj;
                let src = &dcols[row * width + j * p..row * width + (j + 1) * p];
                let (lo, hi, shift) = g.valid_cols(kj);
                for oh in 0..g.out_h {
                    let Some(ih) = g.in_row(oh, ki) else { continue };
                    let srow = &src[oh * g.out_w + lo..oh * g.out_w + hi];
                    let drow = &mut dst[ih * g.in_w..(ih + 1) * g.in_w];
                    let first = ((lo * g.stride[1]) as isize + shift) as usize;
                    if g.stride[1] == 1 {
                        for (d, &s) in drow[first..first + srow.len()].iter_mut().zip(srow) {
                            *d += s;
                        }
                    } else {
                        for (d, &s) in drow[first..].iter_mut().step_by(g.stride[1]).zip(srow) {
                            *d += s;
                        }
                    }
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    if parallel_planes {
        use rayon::prelude::*;
        dx.par_chunks_mut(plane).enumerate().for_each(|(i, d)| fill_plane(i, d));
        return;
    }
    let _ = parallel_planes;
    dx.chunks_mut(plane).enumerate().for_each(|(i, d)| fill_plane(i, d));
}

/// `dY` of images `b0 .. b0 + nb` (`[N, C_out, P]`) as `[C_out, nb·P]`: one contiguous row per output channel.
fn transpose_batch<T: Scalar>(dy: &[T], b0: usize, nb: usize, c_out: usize, p: usize, out: &mut [T]) {
    let width = nb * p;
    for j in 0..nb {
        for co in 0..c_out {
            let src = &dy[((b0 + j) * c_out + co) * p..((b0 + j) * c_out + co + 1) * p];
            out[co * width + j * p..co * width + (j + 1) * p].copy_from_slice(src);
        }
    }
}

pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
    t.layout().shape().dims()
}

/// One GEMM per image, reading and writing the tensors' own `[C_out, P]` planes, when an image has at least as
/// many output positions as the weight has columns (packing the weight again per image costs little then);
/// otherwise one GEMM per chunk, through `[C_out, nb·P]` copies (the deep layers: few positions, large weights).
fn per_image_gemm(p: usize, r: usize) -> bool {
    p >= r
}

/// `dst (m × n, row stride dst_rs) (+)= lhs · rhs` with explicit strides (column stride, row stride).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into<T: Scalar>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const T,
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: *const T,
    (rhs_cs, rhs_rs): (usize, usize),
    one: T,
    parallelism: gemm::Parallelism,
) {
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>() {
        // f32 (training and inference) on the instruction set chosen for this process (crate::gemm_isa), unless
        // that is gemm's own dispatch, which the call below makes.
        // SAFETY: T is f32, so the casts are identities; the caller's shapes and strides are passed on.
        let ran = unsafe {
            crate::gemm_isa::gemm_f32(
                (m, n, k),
                dst.cast(),
                (1, dst_rs),
                accumulate,
                lhs.cast(),
                (lhs_cs, lhs_rs),
                rhs.cast(),
                (rhs_cs, rhs_rs),
                parallelism,
            )
        };
        if ran {
            return;
        }
    }
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            one,
            one,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Forward `conv2d` for f32/f64 with `groups == 1` (see [`use_whole_image_forward`]).
pub fn conv2d_forward<T: Scalar>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
    dtype: DType,
    one: T,
) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let [n, c_in, in_h, in_w] = dims4(&x);
    let [c_out, _, kh, kw] = dims4(&weight);
    let out_h = calculate_conv_output_size(kh, options.stride[0], options.padding[0], options.dilation[0], in_h);
    let out_w = calculate_conv_output_size(kw, options.stride[1], options.padding[1], options.dilation[1], in_w);
    let g = Geometry::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options);
    let (p, r) = (g.p(), g.r());
    let x_data: &[T] = x.storage();
    let w = weight.storage::<T>().as_ptr() as usize;
    let bias = bias.map(|b| b.to_contiguous());
    let b: Option<&[T]> = bias.as_ref().map(|b| b.storage());
    let plan = Plan::new(n, r * p);
    let per_image = per_image_gemm(p, r);
    let mut out = crate::fill::par_filled(n * c_out * p, c_out * p, T::default());
    #[cfg(feature = "rayon")]
    if !plan.parallel && threads() > 1 {
        // Fewer images than threads: split each image's work between the threads, by output rows where an
        // image has many positions, by output channels where it has few (the deep layers).
        let small = SmallBatch { x: x_data, w: weight.storage(), bias: b, g: &g, c_out, n, one };
        if out_h >= threads() && p >= 32 * threads() {
            forward_in_bands(&small, &mut out);
        } else {
            forward_by_channels(&small, &mut out);
        }
        return FlexTensor::new(
            burn_std::Bytes::from_elems(out),
            Layout::contiguous(Shape::from(vec![n, c_out, out_h, out_w])),
            dtype,
        );
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if implicit::applies(options, is_f32::<T>()) {
        // On AMX tiles, stride 1: the tiles are filled from x itself (conv/implicit.rs), the weight packed once.
        let taps = implicit::Taps::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options.padding);
        // SAFETY: `applies` means AMX was selected and granted; T is f32; the weight is C_out × R, contiguous.
        let wp = unsafe { crate::amx::PackedLhs::new(c_out, r, w as *const f32, (1, r), threads() > 1) };
        let threads = if plan.parallel { 1 } else { threads() };
        let image = c_in * in_h * in_w;
        let x = x_data.as_ptr() as usize;
        plan.for_each_chunk(n, &mut out, c_out * p, |b0, nb, out| {
            // SAFETY (all products below): T is f32; `cols` covers images b0 .. b0 + nb of x; each product writes
            // its own columns of this chunk's output or scratch.
            let x = x as *const f32;
            if per_image {
                // out[j][:, band] = W · cols(x[j], band), a band of output rows whose tiles stay in cache.
                let band_rows = (IMPLICIT_TILE_ELEMS / (r * out_w).max(1)).clamp(1, out_h.max(1));
                for j in 0..nb {
                    let dst = out[j * c_out * p..].as_mut_ptr() as *mut f32;
                    let x = unsafe { x.add((b0 + j) * image) };
                    for start in (0..out_h).step_by(band_rows) {
                        let rows = band_rows.min(out_h - start);
                        let cols = implicit::Cols { taps: &taps, x, start: start * out_w, count: rows * out_w };
                        unsafe { implicit::forward(&wp, &cols, dst.add(start * out_w), p, threads) };
                    }
                }
                add_bias(out, b, c_out, p);
                return;
            }
            let width = nb * p;
            scratch::with::<T, _>([c_out * width, 0], |prod, _| {
                let cols = implicit::Cols { taps: &taps, x: unsafe { x.add(b0 * image) }, start: 0, count: width };
                unsafe { implicit::forward(&wp, &cols, prod.as_mut_ptr() as *mut f32, width, threads) };
                unbatch(prod, out, b, c_out, p);
            })
        });
        return FlexTensor::new(
            burn_std::Bytes::from_elems(out),
            Layout::contiguous(Shape::from(vec![n, c_out, out_h, out_w])),
            dtype,
        );
    }
    plan.for_each_chunk(n, &mut out, c_out * p, |b0, nb, out| {
        let width = nb * p;
        if per_image {
            // out[j] (C_out × P) = W (C_out × R) · im2col(x[j]) (R × P), a cache-sized band of rows at a time.
            for j in 0..nb {
                let dst = out[j * c_out * p..].as_mut_ptr();
                let par = plan.gemm_parallelism(c_out, p, r);
                unsafe { forward_rows_tiled(x_data, w as *const T, &g, c_out, b0 + j, 0..out_h, dst, one, par) };
            }
            add_bias(out, b, c_out, p);
            return;
        }
        let prod_len = c_out * width;
        scratch::with::<T, _>([r * width, prod_len], |cols, prod| {
            im2col(x_data, b0, nb, &g, cols, !plan.parallel);
            let w = w as *const T;
            // prod (C_out × nb·P) = W (C_out × R) · cols (R × nb·P): the weight is packed once per chunk.
            let par = plan.gemm_parallelism(c_out, width, r);
            unsafe {
                gemm_into(
                    (c_out, width, r),
                    prod.as_mut_ptr(),
                    width,
                    false,
                    w,
                    (1, r),
                    cols.as_ptr(),
                    (1, width),
                    one,
                    par,
                )
            };
            unbatch(prod, out, b, c_out, p);
        })
    });
    FlexTensor::new(
        burn_std::Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![n, c_out, out_h, out_w])),
        dtype,
    )
}

/// Whether `T` is f32 (the AMX paths' element type).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn is_f32<T: 'static>() -> bool {
    core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>()
}

/// Adds `bias[co]` to every plane `co` of `out` (`[nb, C_out, P]`).
fn add_bias<T: Scalar>(out: &mut [T], bias: Option<&[T]>, c_out: usize, p: usize) {
    if let Some(b) = bias {
        for (i, plane) in out.chunks_mut(p).enumerate() {
            let v = b[i % c_out];
            plane.iter_mut().for_each(|o| *o += v);
        }
    }
}

/// `prod` (`[C_out, nb, P]`) → `out` (`[nb, C_out, P]`), adding the bias on the way.
fn unbatch<T: Scalar>(prod: &[T], out: &mut [T], bias: Option<&[T]>, c_out: usize, p: usize) {
    let width = out.len() / c_out;
    for (i, plane) in out.chunks_mut(p).enumerate() {
        let (j, co) = (i / c_out, i % c_out);
        let src = &prod[co * width + j * p..co * width + (j + 1) * p];
        match bias {
            Some(b) => plane.iter_mut().zip(src).for_each(|(o, &v)| *o = v + b[co]),
            None => plane.copy_from_slice(src),
        }
    }
}

/// Output positions × taps of one band of the implicit forward pass (conv/implicit.rs): its bf16 tiles (256 KiB)
/// stay in the core's L2 cache between being packed and being multiplied.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const IMPLICIT_TILE_ELEMS: usize = 128 << 10;

/// Output positions × taps of one im2col tile in the row-tiled forward pass (512 KiB of f32): small enough that
/// gemm packs the tile from the core's L2 cache rather than from memory.
const TILE_ELEMS: usize = 128 << 10;

/// `out_img[:, rows]` (C_out × |rows|·out_w, row stride P) = W (C_out × R) · im2col(x[b], rows), one tile of
/// output rows at a time (see [`TILE_ELEMS`]). `out_img` points at image `b`'s `[C_out, P]` output.
///
/// # Safety
/// `out_img` must be valid for writes of `C_out × P` elements, and `w` for reads of `C_out × R`.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_rows_tiled<T: Scalar>(
    x: &[T],
    w: *const T,
    g: &Geometry,
    c_out: usize,
    b: usize,
    rows: core::ops::Range<usize>,
    out_img: *mut T,
    one: T,
    par: gemm::Parallelism,
) {
    let (p, r) = (g.p(), g.r());
    let tile_rows = (TILE_ELEMS / (r * g.out_w).max(1)).clamp(1, rows.len().max(1));
    scratch::with::<T, _>([r * tile_rows * g.out_w, 0], |cols, _| {
        let mut start = rows.start;
        while start < rows.end {
            let band = start..(start + tile_rows).min(rows.end);
            let bp = band.len() * g.out_w;
            let cols = &mut cols[..r * bp];
            im2col_band(x, b, 1, g, band.clone(), cols, false);
            let dst = unsafe { out_img.add(band.start * g.out_w) };
            unsafe { gemm_into((c_out, bp, r), dst, p, false, w, (1, r), cols.as_ptr(), (1, bp), one, par) };
            start = band.end;
        }
    })
}

/// A forward pass on fewer images than threads: what its two strategies below need.
#[cfg(feature = "rayon")]
struct SmallBatch<'a, T> {
    x: &'a [T],
    w: &'a [T],
    bias: Option<&'a [T]>,
    g: &'a Geometry,
    c_out: usize,
    n: usize,
    one: T,
}

/// The forward pass of a batch smaller than the thread pool (single-image inference): each image's output rows
/// are cut into one band per thread, and each band runs its own im2col and single-threaded GEMM into its columns
/// of the output. gemm's own parallel mode scaled poorly on these products (C_out of 16–64 rows).
#[cfg(feature = "rayon")]
fn forward_in_bands<T: Scalar>(sb: &SmallBatch<'_, T>, out: &mut [T]) {
    use rayon::prelude::*;
    let SmallBatch { x, w, bias, g, c_out, n, one } = *sb;
    let p = g.p();
    let bands = threads();
    let rows = g.out_h.div_ceil(bands);
    for (b, out) in out.chunks_mut(c_out * p).enumerate().take(n) {
        let dst = out.as_mut_ptr() as usize;
        (0..g.out_h.div_ceil(rows)).into_par_iter().for_each(|t| {
            let band = t * rows..((t + 1) * rows).min(g.out_h);
            let band_p = band.len() * g.out_w;
            let col0 = band.start * g.out_w;
            // out[:, band] (C_out × band_P, row stride P) = W (C_out × R) · im2col(x[b], band) (R × band_P)
            let base = dst as *mut T;
            let par = gemm::Parallelism::None;
            unsafe { forward_rows_tiled(x, w.as_ptr(), g, c_out, b, band.clone(), base, one, par) };
            if let Some(bias) = bias {
                let dst = unsafe { base.add(col0) };
                for (co, &v) in bias.iter().enumerate() {
                    // Each band owns its columns of every output row.
                    let row = unsafe { core::slice::from_raw_parts_mut(dst.add(co * p), band_p) };
                    row.iter_mut().for_each(|o| *o += v);
                }
            }
        });
    }
}

/// The forward pass of a batch smaller than the thread pool, for images with few output positions: one im2col
/// per image, then each thread multiplies its share of the output channels (its rows of the weight, packed once).
#[cfg(feature = "rayon")]
fn forward_by_channels<T: Scalar>(sb: &SmallBatch<'_, T>, out: &mut [T]) {
    use rayon::prelude::*;
    let SmallBatch { x, w, bias, g, c_out, n, one } = *sb;
    let (p, r) = (g.p(), g.r());
    let per_task = c_out.div_ceil(threads());
    for (b, out) in out.chunks_mut(c_out * p).enumerate().take(n) {
        scratch::with::<T, _>([r * p, 0], |cols, _| {
            im2col(x, b, 1, g, cols, true);
            let cols = &*cols;
            out.par_chunks_mut(per_task * p).enumerate().for_each(|(t, out)| {
                let (co0, rows) = (t * per_task, out.len() / p);
                // out[co0 .. co0 + rows] (rows × P) = W[co0 .. co0 + rows] (rows × R) · cols (R × P)
                let lhs = w[co0 * r..].as_ptr();
                let par = gemm::Parallelism::None;
                unsafe {
                    gemm_into((rows, p, r), out.as_mut_ptr(), p, false, lhs, (1, r), cols.as_ptr(), (1, p), one, par)
                };
                if let Some(bias) = bias {
                    for (row, &v) in out.chunks_mut(p).zip(&bias[co0..]) {
                        row.iter_mut().for_each(|o| *o += v);
                    }
                }
            });
        });
    }
}

/// Whether [`conv2d_forward`] takes this convolution: `groups == 1`, not a stride-1 unpadded 1×1 (burn-flex's own
/// 1×1 path multiplies without im2col) and not burn-flex's direct small-channel case (≤ 4 in, ≤ 16 out).
pub fn use_whole_image_forward(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> bool {
    let w = weight.layout().shape();
    let (n, c_in) = (x.layout().shape()[0], x.layout().shape()[1]);
    let plain_1x1 = w[2] == 1 && w[3] == 1 && options.stride == [1, 1] && options.padding == [0, 0];
    // burn-flex's direct small-channel kernel wins on a batch, the banded forward on a single image; on AMX tiles
    // the implicit GEMM takes the batch (conv/small.rs).
    let small_channels = c_in <= 4 && w[0] <= 16 && n >= threads() && !crate::gemm_isa::on_amx_tiles();
    options.groups == 1 && !plain_1x1 && !small_channels
}

/// Weight gradient of a `conv2d` over f32 or f64; shape `[C_out, C_in / groups, KH, KW]`.
pub fn conv2d_weight_backward<T: Scalar>(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
    dtype: DType,
    one: T,
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let [n, c_in, in_h, in_w] = dims4(&x);
    let [_, c_out, out_h, out_w] = dims4(&dy);
    let [_, c_in_group, kh, kw] = weight_shape;
    let groups = options.groups.max(1);
    let c_out_group = c_out / groups;
    let g = Geometry::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options);
    let p = g.p();
    let r_group = c_in_group * kh * kw;
    let x_data: &[T] = x.storage();
    let dy_data: &[T] = dy.storage();
    let plan = Plan::new(n, g.r() * p);
    let per_image = per_image_gemm(p, g.r());
    let len = c_out * r_group;

    // One partial gradient per chunk, summed at the end (the chunks' images are independent).
    let chunk_grad = |b0: usize, nb: usize| -> Vec<T> {
        let width = nb * p;
        let mut grad = vec![T::default(); len];
        // grad[g] (C_out_group × R_group) += dY[g rows] (C_out_group × k) · cols[g rows]ᵀ (k × R_group), from
        // `cols` with row stride `cols_rs`; the first product overwrites.
        let mut first = true;
        let mut accumulate = |dy_ptr: *const T, dy_rs: usize, cols: *const T, cols_rs: usize, k: usize| {
            for gi in 0..groups {
                let par = plan.gemm_parallelism(c_out_group, r_group, k);
                unsafe {
                    gemm_into(
                        (c_out_group, r_group, k),
                        grad.as_mut_ptr().add(gi * c_out_group * r_group),
                        r_group,
                        !first,
                        dy_ptr.add(gi * c_out_group * dy_rs),
                        (1, dy_rs),
                        cols.add(gi * r_group * cols_rs),
                        (cols_rs, 1),
                        one,
                        par,
                    );
                }
            }
            first = false;
        };
        if per_image {
            // Image by image from dY's own planes, a cache-sized band of output rows at a time (see TILE_ELEMS).
            let tile_rows = (TILE_ELEMS / (g.r() * out_w).max(1)).clamp(1, out_h.max(1));
            scratch::with::<T, _>([g.r() * tile_rows * out_w, 0], |cols, _| {
                for j in 0..nb {
                    let mut start = 0;
                    while start < out_h {
                        let band = start..(start + tile_rows).min(out_h);
                        let bp = band.len() * out_w;
                        let cols = &mut cols[..g.r() * bp];
                        im2col_band(x_data, b0 + j, 1, &g, band.clone(), cols, !plan.parallel);
                        let dy = dy_data[(b0 + j) * c_out * p + band.start * out_w..].as_ptr();
                        accumulate(dy, p, cols.as_ptr(), bp, bp);
                        start = band.end;
                    }
                }
            });
        } else {
            // The whole chunk from a [C_out, nb·P] copy of dY.
            scratch::with::<T, _>([g.r() * width, c_out * width], |cols, dy_t| {
                im2col(x_data, b0, nb, &g, cols, !plan.parallel);
                transpose_batch(dy_data, b0, nb, c_out, p, dy_t);
                accumulate(dy_t.as_ptr(), width, cols.as_ptr(), width, width);
            });
        }
        grad
    };
    // On AMX tiles, stride 1: the tiles of colsᵀ are filled from x itself (conv/implicit.rs).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let taps = implicit::applies(options, is_f32::<T>())
        .then(|| implicit::Taps::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options.padding));
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let implicit_grad = |taps: &implicit::Taps, b0: usize, nb: usize| -> Vec<T> {
        let mut grad = vec![T::default(); len];
        let threads = if plan.parallel { 1 } else { threads() };
        let image = c_in * in_h * in_w;
        let x = x_data.as_ptr() as *const f32;
        let dst = grad.as_mut_ptr() as *mut f32;
        // SAFETY (all products below): T is f32; `cols` covers images b0 .. b0 + nb of x, `dy` the same images'
        // output gradient; `grad` is this chunk's own.
        if per_image {
            // grad (+)= dY[j][:, band] · cols(x[j], band)ᵀ, a band of output rows whose tiles stay in cache.
            let band_rows = (IMPLICIT_TILE_ELEMS / (g.r() * out_w).max(1)).clamp(1, out_h.max(1));
            let mut first = true;
            for j in b0..b0 + nb {
                let x = unsafe { x.add(j * image) };
                for start in (0..out_h).step_by(band_rows) {
                    let rows = band_rows.min(out_h - start);
                    let cols = implicit::Cols { taps, x, start: start * out_w, count: rows * out_w };
                    let dy = dy_data[j * c_out * p + start * out_w..].as_ptr() as *const f32;
                    unsafe { implicit::weight_grad(dy, p, c_out, &cols, dst, !first, threads) };
                    first = false;
                }
            }
        } else {
            let width = nb * p;
            scratch::with::<T, _>([c_out * width, 0], |dy_t, _| {
                transpose_batch(dy_data, b0, nb, c_out, p, dy_t);
                let cols = implicit::Cols { taps, x: unsafe { x.add(b0 * image) }, start: 0, count: width };
                let dy = dy_t.as_ptr() as *const f32;
                unsafe { implicit::weight_grad(dy, width, c_out, &cols, dst, false, threads) };
            });
        }
        grad
    };
    let starts: Vec<usize> = (0..n).step_by(plan.chunk.max(1)).collect();
    let add = |mut a: Vec<T>, b: Vec<T>| {
        a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
        a
    };
    let run = |b0: usize| {
        let nb = plan.chunk.min(n - b0);
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Some(taps) = &taps {
            return implicit_grad(taps, b0, nb);
        }
        chunk_grad(b0, nb)
    };
    // Side by side, each thread sums a fixed, contiguous run of chunks and the runs are added in order: the same
    // association every time (rayon's `reduce` would pair results as work-stealing happened to split the work,
    // and floating-point sums in another order would make training irreproducible).
    #[cfg(feature = "rayon")]
    let grad = if plan.parallel {
        use rayon::prelude::*;
        let per_thread = starts.len().div_ceil(threads()).max(1);
        let runs: Vec<Vec<T>> = starts
            .par_chunks(per_thread)
            .map(|run_starts| run_starts.iter().map(|&b0| run(b0)).reduce(add).expect("non-empty run"))
            .collect();
        runs.into_iter().reduce(add)
    } else {
        starts.iter().map(|&b0| run(b0)).reduce(add)
    };
    #[cfg(not(feature = "rayon"))]
    let grad = starts.iter().map(|&b0| run(b0)).reduce(add);
    let grad = grad.unwrap_or_else(|| vec![T::default(); len]);
    FlexTensor::new(burn_std::Bytes::from_elems(grad), Layout::contiguous(Shape::from(weight_shape.to_vec())), dtype)
}

/// The weight `w` (C_out × C_in × K) with its channels swapped and each kernel turned half a turn: C_in × C_out × K,
/// `[ci][co][K − 1 − k] = w[co][ci][k]`. A task writes a block of input channels' rows, reading each output
/// channel's slice for that block as one contiguous run (a row at a time would read K floats every C_in·K).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn turn_kernel<T: Scalar>(w: &[T], c_out: usize, c_in: usize, k: usize) -> Vec<T> {
    const BLOCK: usize = 16;
    let row = c_out * k;
    if row == 0 {
        return vec![T::default(); w.len()];
    }
    // Every value is written below, each block by its task, so the buffer starts unwritten.
    let mut turned: Vec<T> = Vec::with_capacity(w.len());
    // SAFETY: T is `Pod`, so any bits are a value, and nothing reads one before `fill` writes it.
    #[allow(clippy::uninit_vec)]
    unsafe {
        turned.set_len(w.len())
    };
    let fill = |block: usize, dst: &mut [T]| {
        let ci0 = block * BLOCK;
        let rows = dst.len() / row;
        for co in 0..c_out {
            let src = &w[(co * c_in + ci0) * k..(co * c_in + ci0 + rows) * k];
            match k {
                // 3 × 3, every stride-1 layer of the three models: a fixed-size copy the compiler unrolls.
                9 => turn_runs::<T, 9>(src, dst, row, co),
                _ => {
                    for (r, src) in src.chunks_exact(k).enumerate() {
                        let d = &mut dst[r * row + co * k..r * row + (co + 1) * k];
                        for (d, &s) in d.iter_mut().zip(src.iter().rev()) {
                            *d = s;
                        }
                    }
                }
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        turned.par_chunks_mut(BLOCK * row).enumerate().for_each(|(b, dst)| fill(b, dst));
    }
    #[cfg(not(feature = "rayon"))]
    turned.chunks_mut(BLOCK * row).enumerate().for_each(|(b, dst)| fill(b, dst));
    turned
}

/// [`turn_kernel`]'s copy for one output channel `co` of a block, K a constant: run `r` of `src` (K floats) goes
/// reversed to `dst[r · row + co · K ..]`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn turn_runs<T: Scalar, const K: usize>(src: &[T], dst: &mut [T], row: usize, co: usize) {
    for (r, src) in src.chunks_exact(K).enumerate() {
        let src: &[T; K] = src.try_into().expect("chunks_exact gives K");
        let d: &mut [T; K] = (&mut dst[r * row + co * K..r * row + (co + 1) * K]).try_into().expect("K values");
        for j in 0..K {
            d[j] = src[K - 1 - j];
        }
    }
}

/// Input gradient of an ungrouped `conv2d` over f32 or f64; shape of `x` (`[N, C_in, H, W]`).
pub fn conv2d_x_backward<T: Scalar>(
    x_shape: [usize; 4],
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
    dtype: DType,
    one: T,
) -> FlexTensor {
    let weight = weight.to_contiguous();
    let dy = output_grad.to_contiguous();
    let [n, c_in, in_h, in_w] = x_shape;
    let [c_out, _, kh, kw] = dims4(&weight);
    let [_, _, out_h, out_w] = dims4(&dy);
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if implicit::applies(options, is_f32::<T>()) && options.padding[0] < kh && options.padding[1] < kw {
        // On AMX tiles, stride 1: dX is the forward convolution of dY with the weight's channels swapped and its
        // kernel turned half a turn, padded by k − 1 − padding, which fills its tiles from dY itself
        // (conv/implicit.rs) where col2im would write the f32 matrix dcols (R × P) and read it back.
        let flipped = FlexTensor::new(
            burn_std::Bytes::from_elems(turn_kernel(weight.storage::<T>(), c_out, c_in, kh * kw)),
            Layout::contiguous(Shape::from(vec![c_in, c_out, kh, kw])),
            dtype,
        );
        let padding = [kh - 1 - options.padding[0], kw - 1 - options.padding[1]];
        let turned = ConvOptions::new([1, 1], padding, [1, 1], 1);
        return conv2d_forward(dy, flipped, None, &turned, dtype, one);
    }
    let g = Geometry::new([c_in, in_h, in_w], [kh, kw], [out_h, out_w], options);
    let (p, r) = (g.p(), g.r());
    let w = weight.storage::<T>().as_ptr() as usize;
    let dy_data: &[T] = dy.storage();
    let plan = Plan::new(n, r * p);
    let per_image = per_image_gemm(p, r);
    let plane = c_in * in_h * in_w;
    let mut dx = crate::fill::par_filled(n * plane, plane, T::default());
    plan.for_each_chunk(n, &mut dx, plane, |b0, nb, dx| {
        let width = nb * p;
        let w = w as *const T;
        if per_image {
            scratch::with::<T, _>([r * p, 0], |dcols, _| {
                for j in 0..nb {
                    // dcols (R × P) = Wᵀ (R × C_out) · dY[b0 + j] (C_out × P)
                    let par = plan.gemm_parallelism(r, p, c_out);
                    let rhs = dy_data[(b0 + j) * c_out * p..].as_ptr();
                    unsafe { gemm_into((r, p, c_out), dcols.as_mut_ptr(), p, false, w, (r, 1), rhs, (1, p), one, par) };
                    col2im(dcols, 1, &g, &mut dx[j * plane..(j + 1) * plane], !plan.parallel);
                }
            });
            return;
        }
        scratch::with::<T, _>([r * width, c_out * width], |dcols, dy_t| {
            transpose_batch(dy_data, b0, nb, c_out, p, dy_t);
            // dcols (R × nb·P) = Wᵀ (R × C_out) · dYᵀ (C_out × nb·P)
            let par = plan.gemm_parallelism(r, width, c_out);
            unsafe {
                gemm_into(
                    (r, width, c_out),
                    dcols.as_mut_ptr(),
                    width,
                    false,
                    w,
                    (r, 1),
                    dy_t.as_ptr(),
                    (1, width),
                    one,
                    par,
                )
            };
            col2im(dcols, nb, &g, dx, !plan.parallel);
        });
    });
    FlexTensor::new(burn_std::Bytes::from_elems(dx), Layout::contiguous(Shape::from(x_shape.to_vec())), dtype)
}
