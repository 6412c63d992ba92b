//! The GitHub Releases client: types, requests, pagination, rate limits, channels.

pub mod types;

pub use types::{Asset, Release};
