//! Talking to GitHub and registries: the Releases API client (pagination, rate limits, channels,
//! the web-URL rule), the OCI registry client and layer URLs (docs/layers.md), and verified
//! streaming downloads. Nothing here writes outside a caller's temp file.

pub mod fetch;
pub mod ghrelease;
pub mod oci;
