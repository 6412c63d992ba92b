//! GitHub's release and asset JSON, as the REST API (2022-11-28) returns it.
//!
//! Only the fields this crate uses are typed; everything else GitHub sends is ignored on input.
//! Optional and nullable fields (`name`, `body`, `label`, `digest`, `published_at`) are `Option`s
//! because real responses contain `null` for them.

use serde::{Deserialize, Serialize};

/// One release (`GET /repos/{owner}/{repo}/releases/...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The API URL of this release.
    #[serde(default)]
    pub url: String,
    /// The web page of this release.
    #[serde(default)]
    pub html_url: String,
    /// GitHub's numeric release id.
    pub id: u64,
    /// The tag, which in this project is the version exactly (`v20240127.0`).
    pub tag_name: String,
    /// The release title (may be null).
    #[serde(default)]
    pub name: Option<String>,
    /// The release notes (may be null).
    #[serde(default)]
    pub body: Option<String>,
    /// Drafts are only visible to users with push access; never installed.
    #[serde(default)]
    pub draft: bool,
    /// Marked as a pre-release on GitHub; only the `nightly` channel considers it.
    #[serde(default)]
    pub prerelease: bool,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339 publication time (null for drafts).
    #[serde(default)]
    pub published_at: Option<String>,
    /// The uploaded files.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// One release asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// The API URL of this asset (download it with `Accept: application/octet-stream`).
    pub url: String,
    /// The public download URL on the web host, which redirects to the storage host.
    pub browser_download_url: String,
    /// GitHub's numeric asset id.
    pub id: u64,
    /// The file name, which is the name in `checksums.sha512`.
    pub name: String,
    /// An optional label (may be null).
    #[serde(default)]
    pub label: Option<String>,
    /// `uploaded` for a complete asset; `open` while an upload is in progress (never installed).
    #[serde(default = "uploaded")]
    pub state: String,
    /// The MIME type the uploader gave.
    #[serde(default)]
    pub content_type: String,
    /// Size in bytes; downloads are capped at it.
    pub size: u64,
    /// `sha256:<hex>` computed by GitHub for assets uploaded since mid-2025, else null.
    #[serde(default)]
    pub digest: Option<String>,
    /// How often it was downloaded.
    #[serde(default)]
    pub download_count: u64,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339 last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
}

fn uploaded() -> String {
    "uploaded".to_string()
}

impl Release {
    /// The asset with exactly this name, if the release has it.
    pub fn asset(&self, name: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.name == name)
    }
}

impl Asset {
    /// The sha256 hex GitHub computed for this asset, when it gave a well-formed `digest`.
    /// A digest with another algorithm is ignored (`None`); a malformed `sha256:` value is
    /// returned as-is so that the comparison fails closed.
    pub fn sha256_digest(&self) -> Option<&str> {
        self.digest.as_deref().and_then(|d| d.strip_prefix("sha256:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        let path = format!("{}/testdata/github/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    #[test]
    fn parses_openapi_example_release() {
        let r: Release = serde_json::from_str(&testdata("openapi-example-release.json")).unwrap();
        assert_eq!(r.tag_name, "v1.0.0");
        assert_eq!(r.id, 1);
        assert!(!r.draft && !r.prerelease);
        let a = r.asset("example.zip").expect("asset");
        assert_eq!(a.size, 1024);
        assert_eq!(a.state, "uploaded");
        assert_eq!(
            a.sha256_digest(),
            Some("2151b604e3429bff440b9fbc03eb3617bc2603cda96c95b9bb05277f9ddba255")
        );
        assert_eq!(a.label.as_deref(), Some("short description"));
    }

    #[test]
    fn parses_openapi_example_lists() {
        let rs: Vec<Release> = serde_json::from_str(&testdata("openapi-example-release-items.json")).unwrap();
        assert!(!rs.is_empty());
        let assets: Vec<Asset> = serde_json::from_str(&testdata("openapi-example-release-asset-items.json")).unwrap();
        assert!(!assets.is_empty());
        let one: Asset = serde_json::from_str(&testdata("openapi-example-release-asset.json")).unwrap();
        assert!(!one.browser_download_url.is_empty());
    }

    #[test]
    fn parses_real_recorded_release_with_null_label_and_digest() {
        let r: Release = serde_json::from_str(&testdata("recorded/real-pirafrank-poof-releases-latest.json")).unwrap();
        assert!(!r.assets.is_empty());
        assert!(r.assets.iter().all(|a| a.state == "uploaded"));
        assert!(r.assets.iter().any(|a| a.label.is_none()));
        assert!(r.assets.iter().all(|a| a.sha256_digest().map(str::len) == Some(64)));
        let t: Release =
            serde_json::from_str(&testdata("recorded/real-pirafrank-poof-releases-tags-v0.5.0.json")).unwrap();
        assert_eq!(t.tag_name, "v0.5.0");
    }

    #[test]
    fn null_digest_is_none() {
        let j = r#"{"url":"u","browser_download_url":"b","id":1,"name":"n","size":3,"digest":null,"label":null}"#;
        let a: Asset = serde_json::from_str(j).unwrap();
        assert_eq!(a.sha256_digest(), None);
        assert_eq!(a.state, "uploaded");
    }
}
