//! `flynnrel`: a GitHub Releases distribution channel for Flynn.
//!
//! One safe Rust core with three thin front-ends (the C ABI, the `flynnrel` CLI, and the Go
//! package built on the C ABI). See `docs/README.md` for the contract:
//! release assets, versions, the install receipt, the host layout and the verification policy.
//!
//! Nothing in this crate updates anything on its own: there are no timers, no background checks
//! and no side effects of loading the library. Every change to a host is an explicit call.

// The floors, lowest first: each module only uses the ones listed before it.
pub mod error;
pub mod ffi;
pub mod fsutil;
pub mod host;
pub mod model;
pub mod ops;
pub mod remote;
#[cfg(feature = "serve")]
pub mod serve;

pub use error::{Error, ErrorKind, Hint, HintOption, Result};
