//! The documents every front-end speaks (docs/c-abi.md#requests-and-outcomes): a client spec, an
//! install request and an update request, each deserializable from JSON with its defaults
//! applied here and nowhere else, and one function per operation that takes a request.
//!
//! The CLI fills a request from its flags, the C ABI decodes it from the caller's JSON as it is
//! (unknown fields are refused), and Go marshals its option structs to the same document. The
//! outcomes ([`InstallReport`], [`UpdateOutcome`]) are serialized the same way for all three.
//! `testdata/contract/` holds one golden document of each, produced by `tests/contract.rs` and
//! decoded by the Go tests, so a renamed field fails on both sides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::host::layout::HostLayout;
use crate::host::receipt::Source;
use crate::host::staging::Parts;
use crate::ops::install::{self, InstallOptions, InstallReport, Target};
use crate::ops::update::{self, UpdateOptions, UpdateOutcome};
use crate::remote::fetch::Progress;
use crate::remote::ghrelease::options::{DEFAULT_REPOSITORY, web_url_for};
use crate::remote::ghrelease::{Channel, Client, ClientOptions, token_from_env};

/// How to reach GitHub. Every field is optional; the defaults are GitHub.com, the repository
/// `flynn/flynn`, the web host that belongs to the API base, and a token from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSpec {
    /// `OWNER/NAME`.
    pub repository: Option<String>,
    /// The API base (GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: Option<String>,
    /// The web base; default: the one that belongs to `api_url`.
    pub web_url: Option<String>,
    /// A token; never serialized back.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Use `FLYNN_GITHUB_TOKEN`, `GH_TOKEN` or `GITHUB_TOKEN` when `token` is absent (default
    /// true).
    pub token_from_env: Option<bool>,
    /// Read timeout per request, seconds.
    pub timeout_secs: Option<u64>,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: Option<u64>,
    /// Retries of a transient failure.
    pub retries: Option<u32>,
    /// The first retry's delay (doubling after), milliseconds.
    pub retry_delay_ms: Option<u64>,
}

impl ClientSpec {
    /// The client options this spec means, defaults applied.
    pub fn options(&self) -> ClientOptions {
        let mut o = ClientOptions::new(self.repository.as_deref().unwrap_or(DEFAULT_REPOSITORY));
        if let Some(a) = &self.api_url {
            o.api_url = a.clone();
        }
        o.web_url = match &self.web_url {
            Some(w) => w.clone(),
            None => web_url_for(&o.api_url, &o.web_url),
        };
        o.token = self.token.clone().filter(|t| !t.is_empty()).or_else(|| {
            if self.token_from_env.unwrap_or(true) {
                token_from_env()
            } else {
                None
            }
        });
        if let Some(t) = self.timeout_secs {
            o.read_timeout = Duration::from_secs(t);
        }
        if let Some(t) = self.connect_timeout_secs {
            o.connect_timeout = Duration::from_secs(t);
        }
        if let Some(r) = self.retries {
            o.retries = r;
        }
        if let Some(d) = self.retry_delay_ms {
            o.retry_delay = Duration::from_millis(d);
        }
        o
    }

    /// A client for this spec (`InvalidArgument` / `InsecureUrl` for a bad repository or URL).
    pub fn client(&self) -> Result<Client> {
        Client::new(self.options())
    }
}

/// The layout of a request's directories; empty ones take the defaults of
/// docs/host-layout.md#directories, under `root` when it is given. A `root` that exists but is
/// not a directory is refused here, for every front-end.
pub fn host_layout(
    root: Option<&Path>,
    bin: Option<&Path>,
    config: Option<&Path>,
    layer: Option<&Path>,
) -> Result<HostLayout> {
    if let Some(r) = root {
        HostLayout::check_root(r)?;
    }
    Ok(HostLayout::new(root, bin, config, layer))
}

/// What to install where (`flynnrel install`/`download`, `flynnrel_client_install`, Go's
/// `Client.Install`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstallRequest {
    /// Everything below this directory instead of `/`.
    pub root: Option<PathBuf>,
    /// The binaries and their symlinks (default `/usr/local/bin`).
    pub bin_dir: Option<PathBuf>,
    /// The receipt, manifests and lock (default `/etc/flynn`).
    pub config_dir: Option<PathBuf>,
    /// The image layers (default `/var/lib/flynn/layer-cache`).
    pub layer_dir: Option<PathBuf>,
    /// Exactly this tag; else `channel`'s newest release by version order.
    pub version: Option<String>,
    /// `stable` (default) or `nightly`; not together with `version`.
    pub channel: Option<String>,
    /// A minisign public key the release must be signed with (the receipt's pin applies too).
    pub public_key: Option<String>,
    /// Lay the release out without writing the receipt (Flynn's `flynn-host download`).
    pub no_receipt: bool,
    /// Report the sha512 of every file written (default true; off saves a third of the CPU time,
    /// verification is the same either way).
    pub report_sha512: Option<bool>,
    /// Refuse a binary that decompresses to more than this many bytes (default 1 GiB).
    pub max_binary_bytes: Option<u64>,
    /// Only these parts of the release: `binaries`, `config`, `layers` (default all). Only with
    /// `no_receipt` (Flynn's downloader methods).
    pub parts: Option<Vec<String>>,
    /// A pull-through cache to pull a registry release's manifest and layers from by digest;
    /// default `FLYNN_REGISTRY_MIRROR` (docs/layers.md#a-registry-mirror).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_mirror: Option<String>,
}

impl InstallRequest {
    /// The host's directories.
    pub fn layout(&self) -> Result<HostLayout> {
        host_layout(
            self.root.as_deref(),
            self.bin_dir.as_deref(),
            self.config_dir.as_deref(),
            self.layer_dir.as_deref(),
        )
    }

    /// The release asked for: exactly one of `version` and `channel` (default `stable`).
    pub fn target(&self) -> Result<Target> {
        match (&self.version, &self.channel) {
            (Some(_), Some(_)) => Err(Error::new(
                ErrorKind::InvalidArgument,
                "give either version or channel, not both",
            )),
            (Some(v), None) => Ok(Target::Version(v.clone())),
            (None, c) => Ok(Target::Channel(match c {
                Some(c) => c.parse()?,
                None => Channel::default(),
            })),
        }
    }

    /// The install options this request means, defaults applied.
    pub fn options(&self) -> Result<InstallOptions> {
        let mut o = InstallOptions::new(self.layout()?, self.target()?);
        o.public_key = self.public_key.clone().filter(|k| !k.trim().is_empty());
        if let Some(r) = self.report_sha512 {
            o.report_sha512 = r;
        }
        o.max_binary = self.max_binary_bytes.unwrap_or(o.max_binary);
        o.registry_mirror = registry_mirror(self.registry_mirror.as_deref());
        if let Some(names) = &self.parts {
            o.parts = Parts::from_names(names, "parts")?;
            if !self.no_receipt {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "parts is only accepted with no_receipt (a download): an install that writes the receipt \
             always takes the whole release",
                ));
            }
        }
        Ok(o)
    }
}

/// Runs an install request: [`install::install`], or [`install::download`] with `no_receipt`.
pub fn install(client: &Client, req: &InstallRequest, progress: Progress<'_>) -> Result<InstallReport> {
    let opts = req.options()?;
    if req.no_receipt {
        install::download(client, &opts, progress)
    } else {
        install::install(client, &opts, progress)
    }
}

/// How to check for or apply an update (`flynnrel update`, `flynnrel_client_update`, Go's
/// `Client.Update`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateRequest {
    /// Everything below this directory instead of `/`.
    pub root: Option<PathBuf>,
    /// The binaries and their symlinks (default `/usr/local/bin`).
    pub bin_dir: Option<PathBuf>,
    /// The receipt, manifests and lock (default `/etc/flynn`).
    pub config_dir: Option<PathBuf>,
    /// The image layers (default `/var/lib/flynn/layer-cache`).
    pub layer_dir: Option<PathBuf>,
    /// Only report whether an update is available.
    pub check: bool,
    /// Reinstall even when up to date; allows updating a development build.
    pub force: bool,
    /// Install exactly this version instead of the channel's newest.
    pub version: Option<String>,
    /// `github` or `tuf` instead of the receipt's source (`github` on a TUF install: hybrid mode).
    pub source: Option<String>,
    /// With an explicit `version`, allow going to a lower version.
    pub allow_downgrade: bool,
    /// A minisign public key releases must be signed with (the receipt's pin applies too).
    pub public_key: Option<String>,
    /// Use this repository instead of the receipt's.
    pub repository: Option<String>,
    /// Use this API base instead of the receipt's.
    pub api_url: Option<String>,
    /// The TUF repository reported for a legacy install without a receipt (default Flynn's).
    pub tuf_repository: Option<String>,
    /// How long `flynn-host.<ver> version` may take after the switch, seconds (default 30).
    pub smoke_timeout_secs: Option<u64>,
    /// Report the sha512 of every file written (default true).
    pub report_sha512: Option<bool>,
    /// A pull-through cache to pull a registry release's manifest and layers from by digest;
    /// default `FLYNN_REGISTRY_MIRROR` (docs/layers.md#a-registry-mirror).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_mirror: Option<String>,
}

impl UpdateRequest {
    /// The host's directories.
    pub fn layout(&self) -> Result<HostLayout> {
        host_layout(
            self.root.as_deref(),
            self.bin_dir.as_deref(),
            self.config_dir.as_deref(),
            self.layer_dir.as_deref(),
        )
    }

    /// The update options this request means, defaults applied.
    pub fn options(&self) -> Result<UpdateOptions> {
        let mut o = UpdateOptions::new(self.layout()?);
        o.check = self.check;
        o.force = self.force;
        o.version = self.version.clone();
        o.source = self.source.as_deref().map(str::parse::<Source>).transpose()?;
        o.allow_downgrade = self.allow_downgrade;
        o.public_key = self.public_key.clone().filter(|k| !k.trim().is_empty());
        o.repository = self.repository.clone();
        o.api_url = self.api_url.clone();
        if let Some(t) = &self.tuf_repository {
            o.tuf_repository = t.clone();
        }
        if let Some(s) = self.smoke_timeout_secs {
            o.smoke_timeout = Duration::from_secs(s);
        }
        if let Some(r) = self.report_sha512 {
            o.report_sha512 = r;
        }
        o.registry_mirror = registry_mirror(self.registry_mirror.as_deref());
        Ok(o)
    }
}

/// The registry mirror a request names, else `FLYNN_REGISTRY_MIRROR` (empty means none).
fn registry_mirror(given: Option<&str>) -> Option<String> {
    given
        .map(str::to_string)
        .or_else(|| std::env::var(crate::remote::oci::MIRROR_ENV).ok())
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
}

/// The repository's releases (`flynnrel releases`): [`Client::releases`]. With a host's layout
/// (`--root`, `--config-dir`), the API's ETag cache persists in its config dir as it does for
/// install and update (docs/host-layout.md#the-etag-cache).
pub fn releases(client: &Client, layout: Option<&HostLayout>) -> Result<Vec<crate::remote::ghrelease::Release>> {
    match layout {
        Some(l) => install::with_host_etag_cache(client, l, Client::releases),
        None => client.releases(),
    }
}

/// Runs an update request (see [`update::update`]).
pub fn update(client: &Client, req: &UpdateRequest, progress: Progress<'_>) -> Result<UpdateOutcome> {
    update::update(client, &req.options()?, progress)
}
