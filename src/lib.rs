//! `flynnrel`: a GitHub Releases distribution channel for Flynn.
//!
//! One safe Rust core with three thin front-ends (the C ABI, the `flynnrel` CLI, and the Go
//! package built on the C ABI). See `docs/README.md` for the contract:
//! release assets, versions, the install receipt, the host layout and the verification policy.
//!
//! Nothing in this crate updates anything on its own: there are no timers, no background checks
//! and no side effects of loading the library. Every change to a host is an explicit call.

pub mod checksums;
pub mod error;
pub mod fetch;
pub mod ffi;
pub mod fsutil;
pub mod ghrelease;
pub mod gz;
pub mod hostlayout;
pub mod install;
pub mod installsource;
pub mod layers;
pub mod package;
pub mod policy;
pub mod release;
pub mod serve;
pub mod signature;
pub mod transaction;
pub mod update;
pub mod version;

pub use error::{Error, ErrorKind, Result};
