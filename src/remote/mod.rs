//! Talking to GitHub and registries: the Releases API client (pagination, rate limits, channels,
//! the web-URL rule), the OCI registry client and layer URLs (docs/layers.md), and verified
//! streaming downloads. Nothing here writes outside a caller's temp file.

pub mod fetch;
pub mod ghrelease;
pub mod oci;

/// A reqwest error in words: what failed (timed out, connection failed, request failed) and
/// every cause in its chain, for the messages of the API client and the registry client.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
