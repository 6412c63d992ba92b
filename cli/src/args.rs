//! The command line: every command and option, with value parsers that reuse the core's own
//! validators (a bad value is a usage error, exit 2). Shared options are grouped under headings
//! and flattened only into the commands that use them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use flynnrel::Error;
use flynnrel::remote::ghrelease::{self, Channel};

use crate::output::Out;

#[derive(Parser, Debug)]
#[command(
    name = "flynnrel",
    version,
    about = "Package, publish, install and update Flynn from GitHub Releases",
    after_help = "Each command's --help lists its own options first, then the shared ones it uses. \
                  Shared options may also be given before the command."
)]
pub(super) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every shared option, as given before the command (`flynnrel --repo R install …`). Each command
/// also takes the groups it uses after its name; a value given there wins.
#[derive(Args, Debug, Clone, Default)]
pub(super) struct Global {
    #[command(flatten)]
    pub(crate) repo: RepoArg,
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[command(flatten)]
    pub(crate) dirs: DirArgs,
    #[command(flatten)]
    pub(crate) key: KeyArg,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// Validates OWNER/NAME with the core's rule, so a bad value is a usage error (exit 2).
pub(super) fn repo_value(s: &str) -> std::result::Result<String, String> {
    ghrelease::options::validate_repository(s)
        .map(|_| s.to_string())
        .map_err(|e| e.message().to_string())
}

/// Validates a version with the core's parser (usage error, exit 2).
pub(super) fn version_value(s: &str) -> std::result::Result<String, String> {
    flynnrel::model::version::Version::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.message().to_string())
}

/// Validates a channel name with the core's parser (usage error, exit 2).
pub(super) fn channel_value(s: &str) -> std::result::Result<Channel, String> {
    s.parse::<Channel>().map_err(|e| e.message().to_string())
}

/// Parses a pointer validity with the core's parser (usage error, exit 2).
pub(super) fn duration_value(s: &str) -> std::result::Result<std::time::Duration, String> {
    flynnrel::model::pointer::parse_expiry(s).map_err(|e| e.message().to_string())
}

/// Validates an install source name with the core's parser (usage error, exit 2).
pub(super) fn source_value(s: &str) -> std::result::Result<flynnrel::host::receipt::Source, String> {
    s.parse().map_err(|e: Error| e.message().to_string())
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "GitHub repository")]
pub(super) struct RepoArg {
    /// GitHub repository OWNER/NAME [env: FLYNN_GITHUB_REPO] [default: flynn/flynn; for update: the
    /// receipt's].
    #[arg(long, value_parser = repo_value)]
    pub(crate) repo: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "GitHub hosts")]
pub(super) struct ApiArgs {
    /// GitHub API base (GitHub Enterprise: https://HOST/api/v3) [env: FLYNN_GITHUB_API_URL]
    /// [default: https://api.github.com; for update: the receipt's].
    #[arg(long)]
    pub(crate) api_url: Option<String>,
    /// GitHub web base [env: FLYNN_GITHUB_URL] [default: https://github.com].
    #[arg(long)]
    pub(crate) web_url: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Host directories")]
pub(super) struct DirArgs {
    /// Install everything under this folder (tests, image builds).
    #[arg(long)]
    pub(crate) root: Option<PathBuf>,
    /// Binary directory (default /usr/local/bin).
    #[arg(long)]
    pub(crate) bin_dir: Option<PathBuf>,
    /// Configuration directory (default /etc/flynn).
    #[arg(long)]
    pub(crate) config_dir: Option<PathBuf>,
    /// Layer cache directory (default /var/lib/flynn/layer-cache).
    #[arg(long)]
    pub(crate) layer_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Signatures")]
pub(super) struct KeyArg {
    /// minisign public key (base64 or a key file path) that releases must be signed with
    /// [env: FLYNN_RELEASE_PUBLIC_KEY].
    #[arg(long)]
    pub(crate) public_key: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Output")]
pub(super) struct OutputArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// More detail: per-asset progress, every file written, HTTP requests and retries.
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

impl Global {
    /// The options in force: what was given after the command wins over what was given before
    /// it, which wins over the environment.
    pub(crate) fn with(
        &self,
        repo: Option<&RepoArg>,
        api: Option<&ApiArgs>,
        dirs: Option<&DirArgs>,
        key: Option<&KeyArg>,
        output: &OutputArgs,
    ) -> Global {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let pick_env = |a: &Option<String>, b: &Option<String>, name: &str| pick(a, b).or_else(|| env(name));
        let pickp = |a: &Option<PathBuf>, b: &Option<PathBuf>| a.clone().or_else(|| b.clone());
        let (r, a, d, k) = (
            repo.cloned().unwrap_or_default(),
            api.cloned().unwrap_or_default(),
            dirs.cloned().unwrap_or_default(),
            key.cloned().unwrap_or_default(),
        );
        Global {
            repo: RepoArg {
                repo: pick_env(&r.repo, &self.repo.repo, "FLYNN_GITHUB_REPO"),
            },
            api: ApiArgs {
                api_url: pick_env(&a.api_url, &self.api.api_url, "FLYNN_GITHUB_API_URL"),
                web_url: pick_env(&a.web_url, &self.api.web_url, "FLYNN_GITHUB_URL"),
            },
            dirs: DirArgs {
                root: pickp(&d.root, &self.dirs.root),
                bin_dir: pickp(&d.bin_dir, &self.dirs.bin_dir),
                config_dir: pickp(&d.config_dir, &self.dirs.config_dir),
                layer_dir: pickp(&d.layer_dir, &self.dirs.layer_dir),
            },
            key: KeyArg {
                public_key: pick_env(&k.public_key, &self.key.public_key, "FLYNN_RELEASE_PUBLIC_KEY"),
            },
            output: OutputArgs {
                json: output.json || self.output.json,
                quiet: output.quiet || self.output.quiet,
                verbose: output.verbose || self.output.verbose,
            },
        }
    }

    pub(crate) fn out(&self) -> Out {
        Out {
            json: self.output.json,
            quiet: self.output.quiet,
            verbose: self.output.verbose,
        }
    }
}

/// The shared groups of the commands that fetch a release onto a host (install, download,
/// update): all of them.
#[derive(Args, Debug, Clone, Default)]
pub(super) struct HostArgs {
    #[command(flatten)]
    pub(crate) repo: RepoArg,
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[command(flatten)]
    pub(crate) dirs: DirArgs,
    #[command(flatten)]
    pub(crate) key: KeyArg,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub(super) enum SourceAction {
    /// Print the receipt (or the legacy TUF source when there is none).
    Show {
        /// The TUF repository of a legacy install without a receipt.
        #[arg(long, default_value = flynnrel::ops::update::DEFAULT_TUF_REPOSITORY)]
        tuf_repository: String,
        #[command(flatten)]
        dirs: DirArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Change the receipt. Given --source and --repository, it also replaces a receipt that cannot
    /// be read (the unreadable file is kept beside it).
    Set {
        /// github or tuf.
        #[arg(long, value_parser = source_value)]
        source: Option<flynnrel::host::receipt::Source>,
        /// OWNER/NAME for github, the TUF repository URL for tuf.
        #[arg(long)]
        repository: Option<String>,
        /// stable or nightly.
        #[arg(long, value_parser = channel_value)]
        channel: Option<Channel>,
        /// Pin this minisign public key (key rotation).
        #[arg(long, conflicts_with = "unpin_public_key")]
        pin_public_key: Option<String>,
        /// Remove the pinned public key.
        #[arg(long)]
        unpin_public_key: bool,
        /// Record this GitHub API base in the receipt (formerly --set-api-url).
        #[arg(long = "api-url", alias = "set-api-url", value_name = "URL")]
        record_api_url: Option<String>,
        /// The TUF repository of a legacy install without a receipt.
        #[arg(long, default_value = flynnrel::ops::update::DEFAULT_TUF_REPOSITORY)]
        tuf_repository: String,
        #[command(flatten)]
        dirs: DirArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Download, verify and lay out a release, and write the install receipt.
    Install {
        /// The version (tag) to install.
        #[arg(long, conflicts_with = "channel", value_parser = version_value)]
        version: Option<String>,
        /// The channel whose newest release to install (default stable).
        #[arg(long, value_parser = channel_value)]
        channel: Option<Channel>,
        /// Refuse a binary that decompresses to more than this many bytes (default 1 GiB).
        #[arg(long)]
        max_binary_bytes: Option<u64>,
        /// Pull a registry release's manifest and layers by digest through this pull-through cache
        /// (http://127.0.0.1:PORT or https); default FLYNN_REGISTRY_MIRROR.
        #[arg(long, value_name = "URL")]
        registry_mirror: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Download, verify and lay out a release's components (no receipt).
    Download {
        /// The version (tag) to download.
        #[arg(long, value_parser = version_value)]
        version: String,
        /// Refuse a binary that decompresses to more than this many bytes (default 1 GiB).
        #[arg(long)]
        max_binary_bytes: Option<u64>,
        /// Pull a registry release's manifest and layers by digest through this pull-through cache
        /// (http://127.0.0.1:PORT or https); default FLYNN_REGISTRY_MIRROR.
        #[arg(long, value_name = "URL")]
        registry_mirror: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Check for or apply an update from the source this host was installed from.
    Update {
        /// Only report: exit 0 when up to date, 100 when an update is available.
        #[arg(long)]
        check: bool,
        /// Reinstall even when up to date (also allows updating a development build).
        #[arg(long)]
        force: bool,
        /// Install exactly this version.
        #[arg(long, value_parser = version_value)]
        version: Option<String>,
        /// Override the receipt's source (github or tuf).
        #[arg(long, value_parser = source_value)]
        source: Option<flynnrel::host::receipt::Source>,
        /// With --version, allow installing a lower version or another version scheme.
        #[arg(long)]
        allow_downgrade: bool,
        /// The TUF repository of a legacy install without a receipt.
        #[arg(long, default_value = flynnrel::ops::update::DEFAULT_TUF_REPOSITORY)]
        tuf_repository: String,
        /// Seconds `flynn-host.<ver> version` may take before the switch is rolled back.
        #[arg(long, default_value_t = 30)]
        smoke_timeout: u64,
        /// Pull a registry release's manifest and layers by digest through this pull-through cache
        /// (http://127.0.0.1:PORT or https); default FLYNN_REGISTRY_MIRROR.
        #[arg(long, value_name = "URL")]
        registry_mirror: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Switch back to the version before the last update.
    Rollback {
        #[command(flatten)]
        dirs: DirArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Read or edit the install receipt.
    Source {
        #[command(subcommand)]
        action: SourceAction,
    },
    /// List releases.
    Releases {
        /// Only releases of this channel (stable or nightly), and show which one it selects.
        #[arg(long, value_parser = channel_value)]
        channel: Option<Channel>,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Publish a signed, expiring channel pointer: write channels/<channel>.json and its
    /// .minisig into a checkout of the repository's flynn-channels branch (docs/channels.md).
    Promote {
        /// The channel (stable or nightly).
        #[arg(long, value_parser = channel_value)]
        channel: Channel,
        /// The release the channel points at; without it, the current pointer is re-signed
        /// (same version, next sequence, new expiry).
        #[arg(long, value_parser = version_value)]
        version: Option<String>,
        /// minisign secret key (the release key; password from FLYNN_RELEASE_SIGN_PASSWORD).
        #[arg(long)]
        sign_key: PathBuf,
        /// How long the pointer is valid (e.g. 14d, 36h); hosts refuse it afterwards.
        #[arg(long, default_value = "14d", value_parser = duration_value)]
        expires: std::time::Duration,
        /// The checkout of the flynn-channels branch to write into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// After a key rotation: the previous public key, which the current pointer is signed
        /// with (its sequence is continued).
        #[arg(long)]
        previous_public_key: Option<String>,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Package Flynn's build tree as the assets of one GitHub release.
    Package {
        /// The version (= tag) of the release, e.g. v20240127.0.
        #[arg(long, value_parser = version_value)]
        version: String,
        /// Flynn's build tree (bin/, manifests/).
        #[arg(long, default_value = "build")]
        build_dir: PathBuf,
        /// The builder's layer cache: <id>.squashfs of every layer images.json references is read
        /// from here (only those files; the directory is not listed).
        #[arg(long, default_value = flynnrel::model::release::DEFAULT_LAYER_CACHE)]
        layer_cache: PathBuf,
        /// Output folder (must not exist, be empty, or hold exactly this release).
        #[arg(long, default_value = "release-artifacts")]
        out: PathBuf,
        /// minisign secret key to sign checksums.sha512 with (password from
        /// FLYNN_RELEASE_SIGN_PASSWORD when encrypted).
        #[arg(long)]
        sign_key: Option<PathBuf>,
        /// The helper binary to publish (default: this flynnrel).
        #[arg(long)]
        helper: Option<PathBuf>,
        /// The helper's platform as GOOS/GOARCH (default: this machine).
        #[arg(long)]
        helper_platform: Option<String>,
        /// Compression threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Compression level, 1-12.
        #[arg(long, default_value_t = flynnrel::model::gz::DEFAULT_LEVEL)]
        level: i32,
        /// Push the layers to this OCI registry repository instead of layers.tar.gz
        /// (oci://REGISTRY/NAMESPACE/NAME; plain http only for a loopback registry); credentials
        /// from FLYNN_REGISTRY_USER / FLYNN_REGISTRY_TOKEN.
        #[arg(
            long,
            value_name = "oci://REGISTRY/NAMESPACE/NAME",
            conflicts_with = "layers_url_template"
        )]
        layers: Option<String>,
        /// Publish images.json with this layer URL template ({id} = layer id) instead of
        /// layers.tar.gz; upload <id>.squashfs from the layer cache there yourself.
        #[arg(long, value_name = "URL")]
        layers_url_template: Option<String>,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check a release folder: every asset listed and matching, nothing extra, signature valid
    /// when a public key is given.
    Verify {
        /// The release folder.
        dir: PathBuf,
        /// The version the signature must name (required with --public-key).
        #[arg(long, value_parser = version_value)]
        version: Option<String>,
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Serve a folder of releases (DIR/OWNER/REPO/TAG/ASSETS) as a GitHub-compatible API.
    Serve {
        /// The folder of releases.
        dir: PathBuf,
        /// API listener address.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Web listener address (browser_download_url redirects).
        #[arg(long, default_value = "127.0.0.1:0")]
        web_listen: SocketAddr,
        /// Storage listener address (the bytes).
        #[arg(long, default_value = "127.0.0.1:0")]
        storage_listen: SocketAddr,
        /// Write the listener URLs as JSON to this file once listening (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Append every request as a JSON line to this file.
        #[arg(long)]
        request_log: Option<PathBuf>,
        /// API requests allowed per hour, as GitHub's primary rate limit (GitHub: 60 anonymous,
        /// 5000 with a token); answers 304 and GET /rate_limit are not counted.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit: u32,
        /// Open connections one client address (IPv6: one /64) may hold over all listeners; a
        /// connection beyond it is answered 503 (retry-after: 1) and closed.
        #[arg(long, value_name = "N", default_value_t = flynnrel::serve::DEFAULT_MAX_CONNECTIONS_PER_IP)]
        max_connections_per_ip: usize,
        /// Open connections in all (every client, every listener); beyond it, the same 503.
        #[arg(long, value_name = "N", default_value_t = flynnrel::serve::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Seconds a client has to send a whole request head; also how long a keep-alive
        /// connection may stay idle between requests.
        #[arg(long, value_name = "SECS", default_value_t = flynnrel::serve::DEFAULT_HEADER_TIMEOUT.as_secs())]
        header_timeout: u64,
        /// Seconds without a byte moving (e.g. a client that stopped reading) before a
        /// connection is closed.
        #[arg(long, value_name = "SECS", default_value_t = flynnrel::serve::DEFAULT_IDLE_TIMEOUT.as_secs())]
        idle_timeout: u64,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout.
    Man,
}
