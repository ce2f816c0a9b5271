//! gemm crate throughput on convolution-shaped products (profiling aid).
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn run(m: usize, n: usize, k: usize, par: gemm::Parallelism, lhs_t: bool) -> f64 {
    let a = vec![1.0f32; m * k];
    let b = vec![1.0f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let go = |c: &mut Vec<f32>| unsafe {
        let (cs, rs) = if lhs_t { (m as isize, 1) } else { (1, k as isize) };
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            cs,
            rs,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    };
    go(&mut c);
    let reps = 10;
    let t = Instant::now();
    for _ in 0..reps {
        go(&mut c);
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    2.0 * (m * n * k) as f64 / s / 1e9
}
fn main() {
    let shapes: Vec<(usize, usize, usize)> = std::env::args()
        .skip(1)
        .map(|a| {
            let v: Vec<usize> = a.split(',').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect();
    for (m, n, k) in shapes {
        let p1 = run(m, n, k, gemm::Parallelism::None, false);
        let p2 = run(m, n, k, gemm::Parallelism::Rayon(0), false);
        let p3 = run(m, n, k, gemm::Parallelism::Rayon(0), true);
        let p4 = run(m, n, k, gemm::Parallelism::None, true);
        println!("m {m:5} n {n:5} k {k:5}: 1 thread {p1:6.1} GFLOP/s, rayon {p2:6.1}, rayon lhsᵀ {p3:6.1}, 1 thread lhsᵀ {p4:6.1}");
    }
}
