//! The GitHub Releases client: types, requests, pagination, rate limits, channels.
//!
//! Named after the original design's Go package `ghrelease` so Flynn's developers recognise it.

pub mod channel;
pub mod client;
pub mod etag_cache;
pub mod link;
pub mod options;
pub mod types;

pub use channel::{Channel, select_channel};
pub use client::{Client, Download};
pub use options::{ClientOptions, token_from_env};
pub use types::{Asset, Release};
