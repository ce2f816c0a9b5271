//! pneumoscope's CPU kernels for burn's Flex backend, each behind a backend extension trait whose default
//! methods are the backend's own operations (so every backend can run the models) and whose autodiff
//! implementation records one operation with a backward pass of its own:
//!
//! - [`conv::Conv2dKernel`]: 2-D convolution — Winograd F(2×2, 3×3), a small-channel direct convolution,
//!   whole-image im2col + GEMM in chunks of the batch, and the bias gradient;
//! - [`pool::MaxPool2dKernel`]: 2-D max pooling and its backward scatter;
//! - [`batch_norm::FusedBatchNorm`]: training-mode BatchNorm with its closed-form backward pass;
//! - [`relu::ReluKernel`]: ReLU and its backward pass in one parallel pass each;
//! - [`adam::AdamKernel`]: burn's Adam step (value clipping, L2 weight decay, both moments, the update) as one
//!   pass per parameter, and [`adam::FusedAdam`], the optimizer that uses it.
//!
//! The convolutions' f32 GEMMs run on AVX2 or AVX-512 as [`gemm_isa`] chooses for the CPU, or, asked for, with
//! bf16 operands on Intel AMX tiles ([`amx`]).
//!
//! [`Kernels`] names the first four together; the models are generic over it.

extern crate alloc;

pub mod adam;
pub mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod batch_norm;
pub mod conv;
pub mod fill;
pub mod gemm_isa;
pub mod pool;
pub mod relu;

/// Every kernel of this crate: what pneumoscope's models need of a backend.
pub trait Kernels: conv::Conv2dKernel + pool::MaxPool2dKernel + batch_norm::FusedBatchNorm + relu::ReluKernel {}

impl<B: conv::Conv2dKernel + pool::MaxPool2dKernel + batch_norm::FusedBatchNorm + relu::ReluKernel> Kernels for B {}
