//! Backend choice: burn's Flex CPU backend always, burn's CUDA backend with the `cuda` cargo feature.
//! Resolves `training.device` to something runnable or a clear error; must not depend on front-ends.

use crate::config::DeviceChoice;
use crate::error::{ConfigError, Result};

/// The CPU backend (burn-flex: gemm-based conv, SIMD, rayon threads).
pub type Cpu = burn::backend::Flex;
/// The CUDA backend (cubecl-cuda, kernels compiled at run time through NVRTC).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// A device that was checked to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Cuda(usize),
}

impl Resolved {
    pub fn describe(&self) -> String {
        match self {
            Resolved::Cpu => format!(
                "cpu (burn-flex, {} threads, {} conv GEMM)",
                rayon::current_num_threads(),
                pneumoscope_kernels::gemm_isa::current()
            ),
            Resolved::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

/// True when this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Checks the requested device. `cuda` on a CPU-only binary, or without a usable GPU, is an error naming
/// the setting; only `auto` falls back to the CPU.
pub fn resolve(choice: DeviceChoice) -> Result<Resolved> {
    match choice {
        DeviceChoice::Cpu => Ok(Resolved::Cpu),
        DeviceChoice::Cuda(n) => {
            if !CUDA_BUILT {
                return Err(ConfigError::new(format!(
                    "`--device cuda:{n}` / `training.device`: this pneumoscope binary was built without CUDA support; \
                     rebuild with `cargo build --release --features cuda` (needs an NVIDIA driver at run time), \
                     or use --device cpu"
                ))
                .into());
            }
            if !nvidia_driver_present() {
                anyhow::bail!("NVIDIA driver library libcuda.so not found: install the driver or use --device cpu");
            }
            probe_cuda(n).map(|_| Resolved::Cuda(n))
        }
        DeviceChoice::Auto => Ok(if CUDA_BUILT && nvidia_driver_present() && probe_cuda(0).is_ok() {
            Resolved::Cuda(0)
        } else {
            Resolved::Cpu
        }),
    }
}

/// True when the NVIDIA driver library loads. Checked before the CUDA runtime is touched: without it, cudarc and
/// cubecl panic (with backtraces) instead of returning an error.
pub fn nvidia_driver_present() -> bool {
    library_loads("libcuda.so.1") || library_loads("libcuda.so")
}

/// True when the dynamic loader finds and loads the shared library `name`.
fn library_loads(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else { return false };
    // SAFETY: dlopen with a valid C string; the handle is closed at once and nothing from it is used.
    unsafe {
        let handle = libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

#[cfg(feature = "cuda")]
fn probe_cuda(n: usize) -> Result<()> {
    use burn::tensor::Tensor;
    // The CUDA runtime panics when no device answers; turn that into an error, keeping its panic off the screen.
    let r = crate::error::quietly(|| {
        let device = burn::backend::cuda::CudaDevice::new(n);
        let t = Tensor::<Gpu, 1>::from_floats([1.0, 2.0], &device);
        t.sum().into_scalar()
    });
    match r {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(()),
        Ok(v) => anyhow::bail!("CUDA device cuda:{n} computed 1+2 = {v}; refusing to train on it"),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into());
            anyhow::bail!("no usable CUDA GPU at cuda:{n}: {msg}")
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda(_n: usize) -> Result<()> {
    anyhow::bail!("built without CUDA")
}

/// "NVIDIA H200 · 3.2/139.8 GiB" for GPU `n`, from `nvidia-smi` (where the driver installed it); None when it is
/// not there or says nothing useful. burn's CUDA backend exposes neither the name nor the memory in use.
pub fn gpu_status(n: usize) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.used,memory.total", "--format=csv,noheader,nounits", "-i", &n.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| parse_gpu_status(&String::from_utf8_lossy(&out.stdout))).flatten()
}

/// Parses one line of `nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader,nounits`
/// (memory in MiB).
pub fn parse_gpu_status(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let mut parts = line.rsplitn(3, ',').map(str::trim);
    let total: f64 = parts.next()?.parse().ok()?;
    let used: f64 = parts.next()?.parse().ok()?;
    let name = parts.next()?.trim();
    if name.is_empty() {
        return None;
    }
    Some(format!("{name} · {:.1}/{:.1} GiB", used / 1024.0, total / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_probe_tells_a_loadable_library_from_a_missing_one() {
        assert!(library_loads("libc.so.6"));
        assert!(!library_loads("libpneumoscope-no-such-driver.so.1"));
        // On a machine without libcuda (CI), `--device cuda` is refused by name before the runtime is touched.
        if !nvidia_driver_present() && CUDA_BUILT {
            let err = resolve(DeviceChoice::Cuda(0)).unwrap_err().to_string();
            assert!(err.contains("libcuda.so not found"), "{err}");
            assert_eq!(resolve(DeviceChoice::Auto).unwrap(), Resolved::Cpu);
        }
    }

    #[test]
    fn nvidia_smi_lines_become_a_short_status() {
        assert_eq!(parse_gpu_status("NVIDIA H200, 3277, 143771\n").as_deref(), Some("NVIDIA H200 · 3.2/140.4 GiB"));
        // A name with a comma in it stays whole.
        assert_eq!(parse_gpu_status("Tesla T4, rev. B, 0, 15360").as_deref(), Some("Tesla T4, rev. B · 0.0/15.0 GiB"));
        assert_eq!(parse_gpu_status(""), None);
        assert_eq!(parse_gpu_status("No devices were found"), None);
    }
}
