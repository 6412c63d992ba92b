//! `flynnrel`: a GitHub Releases distribution channel for Flynn.
//!
//! One safe Rust core with three thin front-ends (the C ABI in [`ffi`], the `flynn-release` CLI,
//! and the Go package built on the C ABI). See `SPEC.md` in the steering repository for the
//! contract: release assets, versions, the install receipt, the host layout and the verification
//! policy.

pub mod checksums;
pub mod error;
pub mod fetch;
pub mod fsutil;
pub mod ghrelease;
pub mod installsource;
pub mod serve;
pub mod version;

pub use error::{Error, ErrorKind, Result};
