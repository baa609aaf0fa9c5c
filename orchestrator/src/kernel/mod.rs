//! Kernels: where a tree comes from (`source`), the patches on top (`patch`), its
//! configuration (`kconfig`), the host tools (`toolchain`), the build (`build`) and the
//! content-addressed artifact cache (`cache`).

pub mod build;
pub mod cache;
pub mod git;
pub mod kconfig;
pub mod patch;
pub mod source;
pub mod toolchain;
