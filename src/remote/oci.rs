//! Layers in an OCI distribution registry (Option B, docs/layers.md#option-b-an-oci-registry), and
//! the plain HTTP(S) GETs of layers from external storage (Option C).
//!
//! The protocol is the OCI distribution spec, spoken over the blocking reqwest the GitHub client
//! already uses, with the `oci-spec` types for the manifest, its descriptors, media types and
//! digests (an async client such as `oci-client` would bring tokio and a second reqwest into a
//! library linked into `flynn-host`). Push: `HEAD` each blob (skipped when present), `POST
//! /v2/<name>/blobs/uploads/` then `PUT <location>&digest=`, then `PUT /v2/<name>/manifests/<tag>`.
//! Pull: `GET /v2/<name>/manifests/sha256:…` (the sha256 of the bytes checked), `GET
//! /v2/<name>/blobs/sha256:…` (redirects followed by hand; the `Authorization` header goes to the
//! registry's own origin only).
//!
//! Auth: a `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` is answered by asking
//! the realm (https, or http on loopback) for a token, anonymously or with HTTP Basic
//! `FLYNN_REGISTRY_USER`/`FLYNN_REGISTRY_TOKEN`, and retrying once with `Authorization: Bearer`;
//! `WWW-Authenticate: Basic` is answered with the credentials when there are some.
//!
//! URLs: `oci://HOST[:PORT]/NAMESPACE/NAME` is https, except for a loopback host (plain http, the
//! core's rule for every URL). A release's `layer_url_template` in OCI mode is
//! `oci://HOST[:PORT]/NAME@sha256:<manifest digest>/{id}`: it pins the manifest, and
//! `images.json` is in the signed checksums, so the whole chain is signed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::image::{Descriptor, Digest as OciDigest, ImageManifest, ImageManifestBuilder, MediaType, Sha256Digest};
use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::header;
use reqwest::{Method, StatusCode, Url};
use sha2::Digest;

use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::hex;
use crate::remote::ghrelease::Download;
use crate::remote::ghrelease::options::{check_allowed, is_loopback, redirect_target, same_origin};

/// The media type of a layer blob: Flynn's own squashfs layer type (images.json's `type`).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.flynn.image.squashfs.v1";
/// The media type of the release's config blob (a small JSON document naming the version and the
/// layers). Debian's docker-registry 2.8.2 stores it and skopeo 1.9.3 copies it as it is.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.flynn.release.config.v1+json";
/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.flynn.release.v1";
/// The annotation on each layer descriptor naming the Flynn layer id.
pub const LAYER_ID_ANNOTATION: &str = "io.flynn.layer.id";
/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Environment variables with the registry credentials (push; pull from a private repository).
pub const USER_ENV: &str = "FLYNN_REGISTRY_USER";
/// See [`USER_ENV`].
pub const TOKEN_ENV: &str = "FLYNN_REGISTRY_TOKEN";
/// Environment variable naming a pull-through cache to pull manifests and blobs from.
pub const MIRROR_ENV: &str = "FLYNN_REGISTRY_MIRROR";

/// Cap on a manifest body (the distribution spec's registries refuse more than 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;
/// Cap on a token response or an error body.
const MAX_TOKEN: u64 = 64 << 10;
const MAX_REDIRECTS: usize = 10;

/// Registry credentials: `FLYNN_REGISTRY_USER` / `FLYNN_REGISTRY_TOKEN` (a token alone is sent
/// with the user name `flynnrel`, which ghcr.io accepts for a token).
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token; never logged.
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The credentials in the environment, if a token is set.
    pub fn from_env() -> Option<Credentials> {
        let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty())?;
        let user = std::env::var(USER_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "flynnrel".to_string());
        Some(Credentials {
            user: user.trim().to_string(),
            token: token.trim().to_string(),
        })
    }
}

/// How requests are timed and retried (taken from the GitHub client's options).
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for a response or the next bytes of a body.
    pub read_timeout: Duration,
    /// Retries of a transient failure (5xx, connection error).
    pub retries: u32,
    /// First retry delay (doubling, capped at 10 s).
    pub retry_delay: Duration,
}

impl Transfer {
    /// The transfer rules of a GitHub client's options.
    pub fn from_options(o: &crate::remote::ghrelease::ClientOptions) -> Transfer {
        Transfer {
            connect_timeout: o.connect_timeout,
            read_timeout: o.read_timeout,
            retries: o.retries,
            retry_delay: o.retry_delay,
        }
    }
}

/// A repository in a registry: `oci://HOST[:PORT]/NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// `NAMESPACE/NAME` (the distribution spec's `<name>`).
    pub name: String,
}

impl Repository {
    /// Parses `oci://HOST[:PORT]/NAME` (`what` names the flag or field in errors).
    pub fn parse(s: &str, what: &str) -> Result<Repository> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "invalid {what} {:?}: {why}; give oci://REGISTRY/NAMESPACE/NAME such as \
                     oci://ghcr.io/flynn/flynn-layers",
                    crate::error::escape(s)
                ),
            )
        };
        let rest = s
            .strip_prefix("oci://")
            .ok_or_else(|| bad("it does not start with oci://"))?;
        let (registry, name) = rest.split_once('/').ok_or_else(|| bad("it names no repository"))?;
        validate_registry(registry).map_err(|w| bad(&w))?;
        validate_name(name).map_err(|w| bad(&w))?;
        let r = Repository {
            registry: registry.to_string(),
            name: name.to_string(),
        };
        check_allowed(&r.base(), what)?;
        Ok(r)
    }

    /// `https://HOST[:PORT]`, or `http://` for a loopback host.
    pub fn base(&self) -> Url {
        let probe = Url::parse(&format!("http://{}/", self.registry)).expect("validated host");
        let scheme = if is_loopback(&probe) { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{}/", self.registry)).expect("validated host")
    }

    /// `oci://HOST[:PORT]/NAME`.
    pub fn to_oci_url(&self) -> String {
        format!("oci://{}/{}", self.registry, self.name)
    }
}

fn validate_registry(r: &str) -> std::result::Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 255
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok
        || Url::parse(&format!("https://{r}/"))
            .map(|u| u.host().is_none())
            .unwrap_or(true)
    {
        return Err(format!("{r:?} is not a registry host[:port]"));
    }
    Ok(())
}

/// The distribution spec's repository name: lowercase components `[a-z0-9]+([._-][a-z0-9]+)*`
/// separated by `/`.
fn validate_name(n: &str) -> std::result::Result<(), String> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if n.len() > 255 || !n.contains('/') || !n.split('/').all(component_ok) {
        return Err(format!(
            "{n:?} is not a repository NAMESPACE/NAME (lowercase letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// A release's layers in a registry: the repository and the pinned manifest digest, as the
/// `layer_url_template` `oci://HOST[:PORT]/NAME@sha256:<hex>/{id}` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayersRef {
    /// Where.
    pub repository: Repository,
    /// The manifest's lowercase hex sha256.
    pub manifest_sha256: String,
}

impl LayersRef {
    /// Parses a `layer_url_template` of OCI mode (`source` and `field` name it in errors).
    pub fn parse_template(t: &str, source: &str) -> Result<LayersRef> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{source} has layer_url_template {:?}, {why}; an OCI release's template is \
                     oci://REGISTRY/NAMESPACE/NAME@sha256:<64 hex digits>/{{id}}: the release is corrupt",
                    crate::error::escape(t)
                ),
            )
        };
        let rest = t
            .strip_suffix("/{id}")
            .ok_or_else(|| bad("which does not end in /{id}"))?;
        let (repo, digest) = rest
            .rsplit_once("@sha256:")
            .ok_or_else(|| bad("which pins no manifest digest (@sha256:…)"))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("whose digest is not 64 lowercase hex digits"));
        }
        let repository = Repository::parse(repo, "registry in layer_url_template").map_err(|e| bad(e.message()))?;
        Ok(LayersRef {
            repository,
            manifest_sha256: digest.to_string(),
        })
    }

    /// The template this reference is written as.
    pub fn template(&self) -> String {
        format!(
            "{}@sha256:{}/{{id}}",
            self.repository.to_oci_url(),
            self.manifest_sha256
        )
    }
}

/// Whether `url` may serve layers: https, or http to loopback.
pub fn check_layer_url(url: &str, what: &str) -> Result<Url> {
    crate::remote::ghrelease::options::parse_allowed_url(url, what)
}

/// An HTTP client with the core's URL rules: no automatic redirects (each hop is checked with
/// [`redirect_target`]), retries with backoff on 5xx and connection errors, and an
/// `Authorization` header sent to one origin only.
pub struct Http {
    http: HttpClient,
    transfer: Transfer,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("transfer", &self.transfer).finish()
    }
}

/// A request's authorization: the header value and the only origin it may be sent to.
struct Auth<'a> {
    value: &'a str,
    origin: &'a Url,
}

impl Http {
    /// A client with `transfer`'s timeouts and retries.
    pub fn new(transfer: Transfer) -> Result<Http> {
        let http = HttpClient::builder()
            .user_agent(concat!("flynnrel/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(transfer.connect_timeout)
            .timeout(transfer.read_timeout)
            .build()
            .map_err(|e| Error::new(ErrorKind::Network, format!("cannot set up the HTTP client: {e}")))?;
        Ok(Http { http, transfer })
    }

    /// The transfer rules.
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }

    /// Sends `method url` (built by `build`, which may be called again for a retry or a redirect
    /// hop), following redirects for GET and HEAD. Returns the final response whatever its
    /// status, after retrying 5xx and connection failures.
    fn send(
        &self,
        method: &Method,
        start: &Url,
        what: &str,
        auth: Option<&Auth<'_>>,
        build: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            let err = match self.send_once(method, start, what, auth, build) {
                Ok(resp) if resp.status().is_server_error() => Error::new(
                    ErrorKind::Network,
                    format!("HTTP {} from {} for {what}", resp.status().as_u16(), resp.url()),
                ),
                Ok(resp) => return Ok(resp),
                Err((e, false)) => return Err(e),
                Err((e, true)) => e,
            };
            if attempt >= self.transfer.retries {
                return Err(Error::new(
                    err.kind(),
                    format!("{} (gave up after {} attempts)", err.message(), attempt + 1),
                ));
            }
            let delay = (self.transfer.retry_delay * (1u32 << attempt.min(8))).min(Duration::from_secs(10));
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    fn send_once(
        &self,
        method: &Method,
        start: &Url,
        what: &str,
        auth: Option<&Auth<'_>>,
        build: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> std::result::Result<Response, (Error, bool)> {
        let mut url = start.clone();
        let follow = *method == Method::GET || *method == Method::HEAD;
        for _ in 0..=MAX_REDIRECTS {
            check_allowed(&url, "URL").map_err(|e| (e, false))?;
            let mut req = build(self.http.request(method.clone(), url.clone())).map_err(|e| (e, false))?;
            if let Some(a) = auth {
                // The credentials go to the registry's own origin only: never to the storage
                // host a blob redirects to.
                if same_origin(&url, a.origin) {
                    req = req.header(header::AUTHORIZATION, a.value);
                }
            }
            let resp = req.send().map_err(|e| {
                (
                    Error::new(
                        ErrorKind::Network,
                        format!(
                            "cannot reach {url} for {what}: {}; check the network and the URL",
                            crate::remote::describe(&e)
                        ),
                    ),
                    true,
                )
            })?;
            let status = resp.status();
            if follow && status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        (
                            Error::new(
                                ErrorKind::InvalidData,
                                format!("{url} answered HTTP {status} without a Location header for {what}"),
                            ),
                            false,
                        )
                    })?;
                url = redirect_target(&url, location).map_err(|e| (e, false))?;
                continue;
            }
            return Ok(resp);
        }
        Err((
            Error::new(
                ErrorKind::InsecureUrl,
                format!("too many redirects (more than {MAX_REDIRECTS}) from {start} for {what}"),
            ),
            false,
        ))
    }

    /// Opens `url` at `offset` for a layer of external storage (Option C): no credentials.
    pub fn open_url(&self, url: &Url, what: &str, offset: u64) -> Result<Download> {
        let resp = self.send(&Method::GET, url, what, None, &|r| Ok(with_range(r, offset)))?;
        download_from(resp, what)
    }
}

fn with_range(r: RequestBuilder, offset: u64) -> RequestBuilder {
    if offset > 0 {
        r.header(header::RANGE, format!("bytes={offset}-"))
    } else {
        r
    }
}

/// An open download from a `200`/`206` response; any other status is an error naming `what`.
fn download_from(resp: Response, what: &str) -> Result<Download> {
    match Download::from_response(resp, what)? {
        Ok(d) => Ok(d),
        Err(resp) if resp.status() == StatusCode::NOT_FOUND => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{what} not found: {} answered 404; the release's layers are missing there",
                resp.url()
            ),
        )),
        Err(resp) => Err(Error::new(
            ErrorKind::HttpStatus,
            format!(
                "unexpected HTTP {} from {} for {what}",
                resp.status().as_u16(),
                resp.url()
            ),
        )),
    }
}

/// A registry repository to push to or pull from, with its auth state.
pub struct Registry {
    http: Http,
    /// Where requests go (the registry, or a pull-through cache in front of it).
    base: Url,
    repo: Repository,
    creds: Option<Credentials>,
    /// The `Authorization` value that worked last (a Bearer token or Basic).
    auth: Mutex<Option<String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base.as_str())
            .field("repo", &self.repo)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Bearer(BTreeMap<String, String>),
    Basic,
}

fn parse_challenge(v: &str) -> Option<Challenge> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        params.insert(k.trim().to_ascii_lowercase(), val.to_string());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer(params))
}

impl Registry {
    /// A client for `repo`, sending every request to `mirror` instead when given (a pull-through
    /// cache: same repository names, content checked by digest). Through a mirror the pulls are
    /// anonymous: the credentials are never sent to the mirror or to a token realm it names (a
    /// cache that serves a private repository holds its own credentials for the registry).
    pub fn new(
        repo: &Repository,
        mirror: Option<&Url>,
        creds: Option<Credentials>,
        transfer: Transfer,
    ) -> Result<Registry> {
        let creds = if mirror.is_some() { None } else { creds };
        let base = match mirror {
            Some(m) => {
                check_allowed(m, "registry mirror")?;
                let mut m = m.clone();
                m.set_path("/");
                m.set_query(None);
                m
            }
            None => repo.base(),
        };
        Ok(Registry {
            http: Http::new(transfer)?,
            base,
            repo: repo.clone(),
            creds,
            auth: Mutex::new(None),
        })
    }

    /// Where requests go.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, tail: &str) -> Result<Url> {
        let s = format!("{}v2/{}/{tail}", self.base, self.repo.name);
        Url::parse(&s).map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot build {s:?}: {e}")))
    }

    /// Sends a request; a `401` with a challenge is answered once (token or Basic) and retried.
    fn request(
        &self,
        method: Method,
        url: &Url,
        what: &str,
        build: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let current = self.auth.lock().ok().and_then(|a| a.clone());
        let resp = self.send_with(&method, url, what, current.as_deref(), build)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let value = match challenge {
            Some(Challenge::Bearer(p)) => format!("Bearer {}", self.fetch_token(&p, url)?),
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => basic(c),
                None => return Err(self.unauthorized(url, what, None)),
            },
            None => return Err(self.unauthorized(url, what, None)),
        };
        let resp = self.send_with(&method, url, what, Some(&value), build)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(url, what, Some("even with the token it gave")));
        }
        if let Ok(mut a) = self.auth.lock() {
            *a = Some(value);
        }
        Ok(resp)
    }

    fn send_with(
        &self,
        method: &Method,
        url: &Url,
        what: &str,
        auth: Option<&str>,
        build: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let a = auth.map(|value| Auth {
            value,
            origin: &self.base,
        });
        self.http.send(method, url, what, a.as_ref(), build)
    }

    fn unauthorized(&self, url: &Url, what: &str, detail: Option<&str>) -> Error {
        Error::new(
            ErrorKind::HttpStatus,
            format!(
                "{url} refused {what} (HTTP 401{}); {}",
                detail.map(|d| format!(", {d}")).unwrap_or_default(),
                if self.creds.is_some() {
                    format!("check {USER_ENV} and {TOKEN_ENV}")
                } else {
                    format!("a private repository needs {USER_ENV} and {TOKEN_ENV}")
                }
            ),
        )
    }

    /// A token from the challenge's realm (https, or http on loopback), for its service and scope.
    fn fetch_token(&self, p: &BTreeMap<String, String>, for_url: &Url) -> Result<String> {
        let realm = p.get("realm").ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{for_url} asked for a Bearer token but named no realm"),
            )
        })?;
        let mut url = Url::parse(realm).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{for_url} named an invalid token realm {realm:?}: {e}"),
            )
        })?;
        check_allowed(&url, "token realm")?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = p.get("service") {
                q.append_pair("service", s);
            }
            if let Some(s) = p.get("scope") {
                for scope in s.split(' ').filter(|s| !s.is_empty()) {
                    q.append_pair("scope", scope);
                }
            }
        }
        let basic_value = self.creds.as_ref().map(basic);
        let auth = basic_value.as_deref().map(|value| Auth { value, origin: &url });
        let what = "a registry token";
        let resp = self.http.send(&Method::GET, &url, what, auth.as_ref(), &|r| Ok(r))?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(Error::new(
                ErrorKind::HttpStatus,
                format!(
                    "token endpoint {} answered HTTP {} for {}; {}",
                    url.origin().ascii_serialization(),
                    status.as_u16(),
                    p.get("scope").map(String::as_str).unwrap_or("the registry"),
                    if self.creds.is_some() {
                        format!("check {USER_ENV} and {TOKEN_ENV}")
                    } else {
                        format!("a private repository needs {USER_ENV} and {TOKEN_ENV}")
                    }
                ),
            ));
        }
        let body = read_capped(resp, MAX_TOKEN, what)?;
        #[derive(serde::Deserialize)]
        struct TokenBody {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenBody = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!(
                    "token endpoint {} answered invalid JSON: {e}",
                    url.origin().ascii_serialization()
                ),
            )
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "token endpoint {} answered no usable token",
                        url.origin().ascii_serialization()
                    ),
                )
            })
    }

    /// The manifest `sha256:<hex>`, its bytes checked against the digest, parsed.
    pub fn manifest_by_digest(&self, sha256_hex: &str) -> Result<(ImageManifest, Vec<u8>)> {
        let url = self.url(&format!("manifests/sha256:{sha256_hex}"))?;
        let what = format!("manifest sha256:{sha256_hex} of {}", self.repo.to_oci_url());
        let resp = self.request(Method::GET, &url, &what, &|r| {
            Ok(r.header(header::ACCEPT, MANIFEST_MEDIA_TYPE))
        })?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{url} has no {what} (HTTP 404); the release's layers were deleted from the registry"),
                ));
            }
            s => {
                return Err(Error::new(
                    ErrorKind::HttpStatus,
                    format!("unexpected HTTP {} from {url} for {what}", s.as_u16()),
                ));
            }
        }
        let body = read_capped(resp, MAX_MANIFEST, &what)?;
        let got = hex(&sha2::Sha256::digest(&body));
        if got != sha256_hex {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "{what} from {url} has sha256 {got}; images.json pins {sha256_hex}: the registry or mirror \
                     is serving other content: nothing was installed"
                ),
            ));
        }
        let m = ImageManifest::from_reader(&body[..]).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{what} from {url} is not an OCI image manifest: {e}"),
            )
        })?;
        Ok((m, body))
    }

    /// Opens blob `sha256:<hex>` at `offset` (redirects to storage followed without credentials).
    pub fn open_blob(&self, sha256_hex: &str, offset: u64) -> Result<Download> {
        let url = self.url(&format!("blobs/sha256:{sha256_hex}"))?;
        let what = format!("blob sha256:{sha256_hex} of {}", self.repo.to_oci_url());
        let resp = self.request(Method::GET, &url, &what, &|r| Ok(with_range(r, offset)))?;
        download_from(resp, &what)
    }

    /// Whether the registry has blob `sha256:<hex>`.
    pub fn has_blob(&self, sha256_hex: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/sha256:{sha256_hex}"))?;
        let what = format!("blob sha256:{sha256_hex} of {}", self.repo.to_oci_url());
        let resp = self.request(Method::HEAD, &url, &what, &|r| Ok(r))?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(Error::new(
                ErrorKind::HttpStatus,
                format!("unexpected HTTP {} from {url} for {what}", s.as_u16()),
            )),
        }
    }

    /// Uploads `len` bytes from `read()` as blob `sha256:<hex>` (monolithic: POST, then PUT with
    /// the digest, which the registry checks).
    pub fn push_blob(
        &self,
        sha256_hex: &str,
        len: u64,
        read: &dyn Fn() -> Result<reqwest::blocking::Body>,
    ) -> Result<()> {
        let start = self.url("blobs/uploads/")?;
        let what = format!("upload of blob sha256:{sha256_hex} to {}", self.repo.to_oci_url());
        let resp = self.request(Method::POST, &start, &what, &|r| {
            Ok(r.header(header::CONTENT_LENGTH, "0"))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(resp, &start, &what));
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidData,
                    format!("{start} answered 202 without a Location for {what}"),
                )
            })?;
        let mut put = start.join(location).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{start} answered an invalid upload Location {location:?}: {e}"),
            )
        })?;
        check_allowed(&put, "upload location")?;
        if !same_origin(&put, &self.base) {
            return Err(Error::new(
                ErrorKind::InsecureUrl,
                format!(
                    "{start} sent the upload to another host ({put}); refusing to send the layer and credentials there"
                ),
            ));
        }
        put.query_pairs_mut()
            .append_pair("digest", &format!("sha256:{sha256_hex}"));
        // The blocking client's timeout covers sending the whole body: allow for a slow uplink
        // (256 KiB/s) on top of the usual wait, still bounded.
        let upload_timeout = self.http.transfer.read_timeout + Duration::from_secs(len / (256 << 10));
        let resp = self.request(Method::PUT, &put, &what, &|r| {
            Ok(r.timeout(upload_timeout)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len.to_string())
                .body(read()?))
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, &put, &what));
        }
        Ok(())
    }

    /// Uploads the blob unless it is already there.
    pub fn ensure_blob(
        &self,
        sha256_hex: &str,
        len: u64,
        read: &dyn Fn() -> Result<reqwest::blocking::Body>,
    ) -> Result<bool> {
        if self.has_blob(sha256_hex)? {
            return Ok(false);
        }
        self.push_blob(sha256_hex, len, read)?;
        Ok(true)
    }

    /// Puts `manifest` (its exact bytes) under `tag`.
    pub fn put_manifest(&self, tag: &str, manifest: &[u8]) -> Result<()> {
        let url = self.url(&format!("manifests/{tag}"))?;
        let what = format!("manifest {tag} of {}", self.repo.to_oci_url());
        let body = manifest.to_vec();
        let resp = self.request(Method::PUT, &url, &what, &|r| {
            Ok(r.header(header::CONTENT_TYPE, MANIFEST_MEDIA_TYPE).body(body.clone()))
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, &url, &what));
        }
        Ok(())
    }
}

fn basic(c: &Credentials) -> String {
    use ct_codecs::{Base64, Encoder};
    let raw = format!("{}:{}", c.user, c.token);
    let enc = Base64::encode_to_string(raw.as_bytes()).unwrap_or_default();
    format!("Basic {enc}")
}

fn status_error(resp: Response, url: &Url, what: &str) -> Error {
    let status = resp.status();
    let body = read_capped(resp, MAX_TOKEN, what).unwrap_or_default();
    let detail: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    Error::new(
        if status == StatusCode::NOT_FOUND {
            ErrorKind::NotFound
        } else {
            ErrorKind::HttpStatus
        },
        format!("unexpected HTTP {} from {url} for {what}: {detail}", status.as_u16()),
    )
}

fn read_capped(resp: Response, cap: u64, what: &str) -> Result<Vec<u8>> {
    let url = resp.url().clone();
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            format!("{url} answered more than {cap} bytes for {what}; refusing it"),
        )
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    resp.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::new(ErrorKind::Network, format!("reading {what} from {url} failed: {e}")))?;
    if buf.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(buf)
}

/// One layer to push: its Flynn id, size and sha256.
#[derive(Debug, Clone)]
pub struct PushLayer {
    /// The Flynn layer id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

fn descriptor(media: &str, size: u64, sha256_hex: &str) -> Result<Descriptor> {
    let d: Sha256Digest = sha256_hex
        .parse()
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("bad sha256 digest {sha256_hex:?}: {e}")))?;
    Ok(Descriptor::new(MediaType::from(media), size, OciDigest::from(d)))
}

/// The release's config blob and manifest, as canonical JSON (sorted keys, no spaces), so that
/// packaging the same release twice pushes the same bytes and pins the same digest.
pub fn release_manifest(version: &str, layers: &[PushLayer]) -> Result<(Vec<u8>, Vec<u8>)> {
    let config = canonical(&serde_json::json!({
        "flynn_release": version,
        "layers": layers.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
    }));
    let config_sha = hex(&sha2::Sha256::digest(&config));
    let mut descs = Vec::new();
    for l in layers {
        let mut d = descriptor(LAYER_MEDIA_TYPE, l.size, &l.sha256)?;
        let mut ann = std::collections::HashMap::new();
        ann.insert(LAYER_ID_ANNOTATION.to_string(), l.id.clone());
        ann.insert(
            "org.opencontainers.image.title".to_string(),
            crate::model::layers::layer_file_name(&l.id),
        );
        d.set_annotations(Some(ann));
        descs.push(d);
    }
    let mut ann = std::collections::HashMap::new();
    ann.insert("org.opencontainers.image.version".to_string(), version.to_string());
    let m = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::from(ARTIFACT_TYPE))
        .config(descriptor(CONFIG_MEDIA_TYPE, config.len() as u64, &config_sha)?)
        .layers(descs)
        .annotations(ann)
        .build()
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("cannot build the manifest: {e}")))?;
    let v = serde_json::to_value(&m)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("cannot encode the manifest: {e}")))?;
    Ok((config, canonical(&v)))
}

/// `v` as JSON with every object's keys sorted (the types hold annotations in a `HashMap`).
fn canonical(v: &serde_json::Value) -> Vec<u8> {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<&String, serde_json::Value> = m.iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(v)).expect("JSON values encode")
}

/// The layer descriptors of a release manifest by Flynn layer id. `InvalidData` (naming `source`)
/// for a layer without the id annotation, with another media type, a non-sha256 digest, or an id
/// twice.
pub fn layers_by_id(m: &ImageManifest, source: &str) -> Result<BTreeMap<String, (u64, String)>> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{source} {why}; it is not a Flynn release manifest: nothing was installed"),
        )
    };
    let mut out = BTreeMap::new();
    for d in m.layers() {
        let id = d
            .annotations()
            .as_ref()
            .and_then(|a| a.get(LAYER_ID_ANNOTATION))
            .ok_or_else(|| {
                bad(format!(
                    "has a layer {} without the {LAYER_ID_ANNOTATION} annotation",
                    d.digest()
                ))
            })?;
        if d.media_type().to_string() != LAYER_MEDIA_TYPE {
            return Err(bad(format!("has layer {id} of media type {}", d.media_type())));
        }
        let digest = d.digest();
        if digest.algorithm().as_ref() != "sha256" {
            return Err(bad(format!(
                "has layer {id} with a {} digest (only sha256 is accepted)",
                digest.algorithm()
            )));
        }
        if out
            .insert(id.clone(), (d.size(), digest.digest().to_string()))
            .is_some()
        {
            return Err(bad(format!("lists layer {id} twice")));
        }
    }
    Ok(out)
}

/// Hashes a file with sha256 and sha512/256 in one pass: `(size, sha256, sha512_256)`.
pub fn hash_layer_file(path: &Path) -> Result<(u64, String, String)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h256 = sha2::Sha256::new();
    let mut h512 = sha2::Sha512_256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h256.update(&buf[..n]);
        h512.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((n_total, hex(&h256.finalize()), hex(&h512.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_parse_and_pick_the_scheme() {
        let r = Repository::parse("oci://ghcr.io/flynn/flynn-layers", "--layers").unwrap();
        assert_eq!(r.base().as_str(), "https://ghcr.io/");
        assert_eq!(r.name, "flynn/flynn-layers");
        let l = Repository::parse("oci://127.0.0.1:5000/ns/rel", "--layers").unwrap();
        assert_eq!(l.base().as_str(), "http://127.0.0.1:5000/");
        for bad in [
            "ghcr.io/flynn/x",
            "oci://ghcr.io",
            "oci://ghcr.io/flynn",
            "oci://ghcr.io/Flynn/x",
            "oci://ghcr.io/flynn//x",
            "oci://gh cr.io/flynn/x",
            "oci://ghcr.io/flynn/x/",
            "oci://ghcr.io/flynn/-x",
        ] {
            let e = Repository::parse(bad, "--layers").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains("--layers"), "{e}");
        }
    }

    #[test]
    fn templates_pin_a_manifest() {
        let d = "a".repeat(64);
        let t = format!("oci://ghcr.io/flynn/layers@sha256:{d}/{{id}}");
        let r = LayersRef::parse_template(&t, "images.json.gz").unwrap();
        assert_eq!(r.manifest_sha256, d);
        assert_eq!(r.template(), t);
        for bad in [
            format!("oci://ghcr.io/flynn/layers@sha256:{d}"),
            "oci://ghcr.io/flynn/layers/{id}".to_string(),
            format!("oci://ghcr.io/flynn/layers@sha256:{}/{{id}}", "A".repeat(64)),
            format!("oci://ghcr.io/flynn/layers@sha256:{}/{{id}}", "a".repeat(63)),
        ] {
            let e = LayersRef::parse_template(&bad, "images.json.gz").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{bad}");
            assert!(e.message().contains("images.json.gz") && e.message().contains("layer_url_template"));
        }
    }

    #[test]
    fn credentials_never_go_to_a_mirror() {
        let repo = Repository::parse("oci://ghcr.io/flynn/layers", "t").unwrap();
        let creds = Credentials {
            user: "u".into(),
            token: "secret".into(),
        };
        let transfer = Transfer::from_options(&crate::remote::ghrelease::ClientOptions::new("flynn/flynn"));
        let direct = Registry::new(&repo, None, Some(creds.clone()), transfer.clone()).unwrap();
        assert!(direct.creds.is_some());
        assert_eq!(direct.base().as_str(), "https://ghcr.io/");
        let mirror = Url::parse("http://127.0.0.1:5000/ignored/path?q=1").unwrap();
        let via = Registry::new(&repo, Some(&mirror), Some(creds), transfer.clone()).unwrap();
        assert!(via.creds.is_none(), "pulls through a mirror are anonymous");
        assert_eq!(via.base().as_str(), "http://127.0.0.1:5000/");
        assert!(!format!("{direct:?}").contains("secret"), "redacted in Debug");
        let plain = Url::parse("http://mirror.example.com/").unwrap();
        let e = Registry::new(&repo, Some(&plain), None, transfer).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InsecureUrl);
    }

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:flynn/x:pull""#,
        )
        .unwrap();
        let Challenge::Bearer(p) = c else { panic!("not bearer") };
        assert_eq!(p["realm"], "https://ghcr.io/token");
        assert_eq!(p["service"], "ghcr.io");
        assert_eq!(p["scope"], "repository:flynn/x:pull");
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn the_manifest_is_canonical_and_reads_back() {
        let layers = vec![
            PushLayer {
                id: "l1".into(),
                size: 3,
                sha256: "b".repeat(64),
            },
            PushLayer {
                id: "l2".into(),
                size: 4,
                sha256: "c".repeat(64),
            },
        ];
        let (c1, m1) = release_manifest("v1", &layers).unwrap();
        for _ in 0..5 {
            let (c2, m2) = release_manifest("v1", &layers).unwrap();
            assert_eq!((&c1, &m1), (&c2, &m2), "reproducible bytes");
        }
        let m = ImageManifest::from_reader(&m1[..]).unwrap();
        let by_id = layers_by_id(&m, "m").unwrap();
        assert_eq!(by_id["l1"], (3, "b".repeat(64)));
        assert_eq!(by_id["l2"], (4, "c".repeat(64)));
        let text = String::from_utf8(m1).unwrap();
        assert!(
            text.contains(MANIFEST_MEDIA_TYPE) && text.contains(CONFIG_MEDIA_TYPE),
            "{text}"
        );
    }
}
