//! `flynnrel`: the helper CLI (docs/cli.md#the-flynnrel-cli).
//!
//! Argument parsing, output formatting and exit codes only; every decision is made in the
//! `flynnrel` core so that the C ABI and the Go package behave the same way.

mod args;
mod output;
mod progress;

use std::process::ExitCode;
use std::sync::Arc;

use args::{Cli, Command, Global, OutputArgs, SourceAction};
use clap::Parser;
use flynnrel::host::layout::HostLayout;
use flynnrel::ops::request::{self, ClientSpec, InstallRequest, UpdateRequest};
use flynnrel::ops::update::{UpdateOptions, UpdateOutcome};
use flynnrel::remote::ghrelease::{self, Channel, Client, ClientOptions};
use flynnrel::{Error, ErrorKind, Result, serve};
use output::Out;

/// Exit code for errors.
const EXIT_ERROR: u8 = 1;

/// Exit code of `update --check` when an update is available.
const EXIT_UPDATE_AVAILABLE: u8 = 100;
/// Exit code of `update` when the TUF updater handles this install.
const EXIT_TUF: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A public key given before `source set` (which takes none: FLYNN_RELEASE_PUBLIC_KEY is not
    // counted) would be ignored: it is refused instead.
    let key_on_command_line = cli.global.key.public_key.is_some();
    let out = cli.global.out();
    match run(&cli, key_on_command_line) {
        Ok(code) => ExitCode::from(code),
        Err((e, out2)) => {
            out2.unwrap_or(out).error(&e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: &Cli, key_on_command_line: bool) -> std::result::Result<u8, (Error, Option<Out>)> {
    let top = &cli.global;
    let none = OutputArgs::default();
    let g = match &cli.command {
        Command::Install { host, .. } | Command::Download { host, .. } | Command::Update { host, .. } => top.with(
            Some(&host.repo),
            Some(&host.api),
            Some(&host.dirs),
            Some(&host.key),
            &host.output,
        ),
        Command::Rollback { dirs, output }
        | Command::Source {
            action: SourceAction::Show { dirs, output, .. } | SourceAction::Set { dirs, output, .. },
        } => top.with(None, None, Some(dirs), None, output),
        Command::Releases {
            repo, api, key, output, ..
        } => top.with(Some(repo), Some(api), None, Some(key), output),
        Command::Promote { repo, api, output, .. } => top.with(Some(repo), Some(api), None, None, output),
        Command::Package { repo, key, output, .. } | Command::Verify { repo, key, output, .. } => {
            top.with(Some(repo), None, None, Some(key), output)
        }
        Command::Serve { output, .. } => top.with(None, None, None, None, output),
        Command::Completions { .. } | Command::Man => top.with(None, None, None, None, &none),
    };
    let out = g.out();
    run_with(cli, &g, out, key_on_command_line).map_err(|e| (e, Some(out)))
}

fn run_with(cli: &Cli, g: &Global, out: Out, key_on_command_line: bool) -> Result<u8> {
    match &cli.command {
        Command::Package {
            version,
            build_dir,
            layer_cache,
            out: out_dir,
            sign_key,
            helper,
            helper_platform,
            threads,
            level,
            layers,
            layers_url_template,
            ..
        } => {
            let repo = g
                .repo
                .repo
                .clone()
                .unwrap_or_else(|| ghrelease::options::DEFAULT_REPOSITORY.to_string());
            let mut opts = flynnrel::ops::package::PackageOptions::new(version.clone(), repo);
            opts.build_dir = build_dir.clone();
            opts.layer_cache = layer_cache.clone();
            opts.out_dir = out_dir.clone();
            opts.sign_key = sign_key.clone();
            opts.sign_password = std::env::var(flynnrel::model::signature::SIGN_PASSWORD_ENV).ok();
            opts.public_key = g.key.public_key.clone();
            opts.helper = helper.clone();
            opts.helper_platform = match helper_platform {
                Some(p) => {
                    let (os, arch) = p.split_once('/').ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidArgument,
                            format!("invalid --helper-platform {p:?}: use GOOS/GOARCH, e.g. linux/amd64"),
                        )
                    })?;
                    Some((os.to_string(), arch.to_string()))
                }
                None => None,
            };
            opts.threads = *threads;
            opts.level = *level;
            opts.layers_registry = layers.clone();
            opts.layers_url_template = layers_url_template.clone();
            package_cmd(out, &opts)
        }
        Command::Install {
            version,
            channel,
            max_binary_bytes,
            registry_mirror,
            ..
        } => install_cmd(
            g,
            out,
            InstallRequest {
                version: version.clone(),
                channel: channel.map(|c| c.as_str().to_string()),
                max_binary_bytes: *max_binary_bytes,
                registry_mirror: registry_mirror.clone(),
                ..install_request(g, out)
            },
        ),
        Command::Download {
            version,
            max_binary_bytes,
            registry_mirror,
            ..
        } => install_cmd(
            g,
            out,
            InstallRequest {
                version: Some(version.clone()),
                max_binary_bytes: *max_binary_bytes,
                registry_mirror: registry_mirror.clone(),
                no_receipt: true,
                ..install_request(g, out)
            },
        ),
        Command::Update {
            check,
            force,
            version,
            source,
            allow_downgrade,
            tuf_repository,
            smoke_timeout,
            registry_mirror,
            ..
        } => {
            let d = &g.dirs;
            let req = UpdateRequest {
                root: d.root.clone(),
                bin_dir: d.bin_dir.clone(),
                config_dir: d.config_dir.clone(),
                layer_dir: d.layer_dir.clone(),
                check: *check,
                force: *force,
                version: version.clone(),
                source: source.map(|s| s.as_str().to_string()),
                allow_downgrade: *allow_downgrade,
                public_key: g.key.public_key.clone(),
                repository: g.repo.repo.clone(),
                api_url: g.api.api_url.clone(),
                tuf_repository: Some(tuf_repository.clone()),
                smoke_timeout_secs: Some(*smoke_timeout),
                // File hashes are shown only in the --json document; they cost a third of the CPU.
                report_sha512: Some(out.json),
                registry_mirror: registry_mirror.clone(),
            };
            let mut opts = req.options()?;
            opts.failpoint = failpoint_from_env();
            update_cmd(g, out, &opts)
        }
        Command::Rollback { .. } => {
            let r =
                flynnrel::ops::update::rollback(&layout(g)?, std::time::Duration::from_secs(30), failpoint_from_env())?;
            out.line(&[("rolled_back_from", r.from.clone()), ("to", r.to.clone())]);
            out.json(&serde_json::to_value(&r).map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?);
            Ok(0)
        }
        Command::Source { action } => source_cmd(g, out, action, key_on_command_line),
        Command::Verify { dir, version, .. } => verify_cmd(g, out, dir, version.as_deref()),
        Command::Releases { channel, .. } => releases(g, out, *channel),
        Command::Promote {
            channel,
            version,
            sign_key,
            expires,
            out: out_dir,
            previous_public_key,
            ..
        } => {
            let opts = flynnrel::ops::promote::PromoteOptions {
                channel: *channel,
                version: version.clone(),
                sign_key: sign_key.clone(),
                password: std::env::var(flynnrel::model::signature::SIGN_PASSWORD_ENV).ok(),
                expires: *expires,
                out_dir: out_dir.clone(),
                now: std::time::SystemTime::now(),
                previous_public_key: previous_public_key.clone(),
            };
            let report = flynnrel::ops::promote::promote(&client(g, out)?, &opts)?;
            out.line(&[
                ("status", "promoted".into()),
                ("repository", report.repository.clone()),
                ("channel", report.channel.clone()),
                ("version", report.version.clone()),
                ("previous", report.previous_version.clone().unwrap_or_default()),
                ("sequence", report.sequence.to_string()),
                ("expires_at", report.expires_at.clone()),
            ]);
            out.json(&serde_json::to_value(&report).unwrap_or_default());
            Ok(0)
        }
        Command::Serve {
            dir,
            listen,
            web_listen,
            storage_listen,
            ready_file,
            request_log,
            rate_limit,
            max_connections_per_ip,
            max_connections,
            header_timeout,
            idle_timeout,
            ..
        } => {
            let mut opts = serve::ServeOptions::new(dir);
            opts.api_listen = *listen;
            opts.web_listen = *web_listen;
            opts.storage_listen = *storage_listen;
            opts.max_connections_per_ip = *max_connections_per_ip;
            opts.max_connections = *max_connections;
            opts.header_timeout = std::time::Duration::from_secs(*header_timeout);
            opts.idle_timeout = std::time::Duration::from_secs(*idle_timeout);
            opts.rate_limit = *rate_limit;
            serve_cmd(out, opts, ready_file.as_deref(), request_log.as_deref())
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "flynnrel", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot render the manual page: {e}")))?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&buf)
                .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write the manual page: {e}")))?;
            Ok(0)
        }
    }
}

/// The install request the shared flags describe (directories, key, hashes for --json).
fn install_request(g: &Global, out: Out) -> InstallRequest {
    let d = &g.dirs;
    InstallRequest {
        root: d.root.clone(),
        bin_dir: d.bin_dir.clone(),
        config_dir: d.config_dir.clone(),
        layer_dir: d.layer_dir.clone(),
        public_key: g.key.public_key.clone(),
        // File hashes are shown only in the --json document; they cost a third of the CPU.
        report_sha512: Some(out.json),
        ..InstallRequest::default()
    }
}

fn client_options(g: &Global, out: Out) -> ClientOptions {
    let spec = ClientSpec {
        repository: g.repo.repo.clone(),
        api_url: g.api.api_url.clone(),
        web_url: g.api.web_url.clone(),
        ..ClientSpec::default()
    };
    let mut opts = spec.options();
    if out.verbose {
        opts.log = Some(Arc::new(|line: &str| {
            progress::log_line(&flynnrel::error::escape(line))
        }));
    }
    opts
}

fn client(g: &Global, out: Out) -> Result<Client> {
    Client::new(client_options(g, out))
}

/// Test-only failpoints (see flynnrel::host::switch); release builds ignore the variable.
fn failpoint_from_env() -> Option<String> {
    if cfg!(debug_assertions) {
        std::env::var("FLYNN_RELEASE_FAILPOINT").ok()
    } else {
        None
    }
}

fn update_cmd(g: &Global, out: Out, opts: &UpdateOptions) -> Result<u8> {
    let mut reporter = progress::Reporter::new(out);
    let mut cb = |p: &str, d: u64, t: u64| reporter.report(p, d, t);
    let outcome = flynnrel::ops::update::update(&client(g, out)?, opts, &mut cb)?;
    drop(reporter);
    let code = match &outcome {
        UpdateOutcome::UpToDate {
            repository,
            current,
            target,
            pointer_expires_at,
        } => {
            let mut fields = vec![
                ("status", "up_to_date".into()),
                ("repository", repository.clone()),
                ("current", current.clone()),
                ("target", target.clone()),
            ];
            fields.extend(pointer_expires_at.clone().map(|e| ("pointer_expires_at", e)));
            out.line(&fields);
            0
        }
        UpdateOutcome::Available {
            repository,
            current,
            target,
            pointer_expires_at,
        } => {
            let mut fields = vec![
                ("status", "update_available".into()),
                ("repository", repository.clone()),
                ("current", current.clone()),
                ("target", target.clone()),
            ];
            fields.extend(pointer_expires_at.clone().map(|e| ("pointer_expires_at", e)));
            out.line(&fields);
            EXIT_UPDATE_AVAILABLE
        }
        UpdateOutcome::Updated {
            repository,
            from,
            to,
            files,
            skipped_layers,
            removed,
            recovered,
            ..
        } => {
            if *recovered != flynnrel::host::switch::Recovery::Clean {
                out.line(&[("recovered", format!("{recovered:?}"))]);
            }
            if out.verbose {
                for f in files {
                    out.line(&[("file", f.path.display().to_string())]);
                }
            }
            for l in skipped_layers {
                out.line(&[("skipped_layer", l.clone())]);
            }
            for r in removed {
                out.line(&[("removed", r.clone())]);
            }
            out.line(&[
                ("status", "updated".into()),
                ("repository", repository.clone()),
                ("from", from.clone()),
                ("to", to.clone()),
            ]);
            0
        }
        UpdateOutcome::Tuf { repository, message } => {
            if !out.json {
                eprintln!(
                    "flynnrel: {}. To check GitHub instead, pass --source github",
                    flynnrel::error::escape(message)
                );
            }
            out.line(&[("status", "tuf".into()), ("repository", repository.clone())]);
            EXIT_TUF
        }
    };
    out.json(&serde_json::to_value(&outcome).map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?);
    Ok(code)
}

fn source_cmd(g: &Global, out: Out, action: &SourceAction, key_on_command_line: bool) -> Result<u8> {
    let layout = layout(g)?;
    let (receipt, legacy) = match action {
        SourceAction::Show { tuf_repository, .. } => flynnrel::ops::source::source_show(&layout, tuf_repository)?,
        SourceAction::Set {
            source,
            repository,
            channel,
            pin_public_key,
            unpin_public_key,
            record_api_url,
            tuf_repository,
            ..
        } => {
            if key_on_command_line && pin_public_key.is_none() && !unpin_public_key {
                // The shared key is what install and update verify with; `source set` changes the
                // pin only through its own flag, and must not exit 0 having ignored the key.
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "`source set` does not use --public-key; to pin a key pass --pin-public-key KEY",
                ));
            }
            let edit = flynnrel::ops::source::SourceEdit {
                source: *source,
                repository: repository.clone(),
                channel: *channel,
                public_key: if *unpin_public_key {
                    Some(String::new())
                } else {
                    pin_public_key.clone()
                },
                api_url: record_api_url.clone(),
            };
            let done = flynnrel::ops::source::source_set(&layout, &edit, tuf_repository)?;
            if let Some(kept) = &done.kept_unreadable {
                out.line(&[("kept_unreadable_receipt", kept.display().to_string())]);
            }
            (done.receipt, false)
        }
    };
    out.line(&[
        ("source", receipt.source.to_string()),
        ("repository", receipt.repository.clone()),
        ("version", receipt.version.clone()),
        ("channel", receipt.channel.clone().unwrap_or_default()),
        ("public_key", receipt.public_key.clone().unwrap_or_default()),
        ("legacy", legacy.to_string()),
    ]);
    let mut v = serde_json::to_value(&receipt).map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("legacy".into(), serde_json::Value::Bool(legacy));
    }
    out.json(&v);
    Ok(0)
}

fn releases(g: &Global, out: Out, channel: Option<Channel>) -> Result<u8> {
    let client = client(g, out)?;
    // A host named by --root or --config-dir lends its ETag cache.
    let host = g.dirs.root.is_some() || g.dirs.config_dir.is_some();
    let all = request::releases(&client, if host { Some(layout(g)?) } else { None }.as_ref())?;
    let shown: Vec<&ghrelease::Release> = all
        .iter()
        .filter(|r| channel.is_none_or(|c| ghrelease::channel::in_channel(r, c).is_some()))
        .collect();
    let key = g
        .key
        .public_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
        .map(flynnrel::model::signature::TrustedKey::parse)
        .transpose()?;
    let (selected, pointer) = match channel {
        Some(c) => flynnrel::ops::channels::selected(&client, &all, c, key.as_ref())?,
        None => (None, None),
    };
    let pointer = pointer.map(|f| f.pointer);
    for r in &shown {
        out.line(&[
            ("tag", r.tag_name.clone()),
            ("name", r.name.clone().unwrap_or_default()),
            ("prerelease", r.prerelease.to_string()),
            ("published_at", r.published_at.clone().unwrap_or_default()),
            ("assets", r.assets.len().to_string()),
        ]);
    }
    if let Some(c) = channel {
        let mut fields = vec![
            ("channel", c.to_string()),
            ("selected", selected.clone().unwrap_or_default()),
        ];
        if let Some(p) = &pointer {
            fields.push(("pointer_sequence", p.sequence.to_string()));
            fields.push(("pointer_expires_at", p.expires_at.clone()));
        }
        out.line(&fields);
    }
    out.json(&serde_json::json!({
        "repository": client.repository(),
        "channel": channel,
        "selected": selected,
        "pointer": pointer,
        "releases": shown.iter().map(|r| serde_json::json!({
            "tag": r.tag_name,
            "name": r.name,
            "prerelease": r.prerelease,
            "published_at": r.published_at,
            "assets": r.assets.iter().map(|a| serde_json::json!({
                "name": a.name, "size": a.size, "digest": a.digest,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }));
    Ok(0)
}

fn layout(g: &Global) -> Result<HostLayout> {
    let d = &g.dirs;
    request::host_layout(
        d.root.as_deref(),
        d.bin_dir.as_deref(),
        d.config_dir.as_deref(),
        d.layer_dir.as_deref(),
    )
}

fn install_cmd(g: &Global, out: Out, req: InstallRequest) -> Result<u8> {
    let client = client(g, out)?;
    let mut reporter = progress::Reporter::new(out);
    let mut cb = |p: &str, d: u64, t: u64| reporter.report(p, d, t);
    let report = request::install(&client, &req, &mut cb)?;
    drop(reporter);
    // The list of files written is detail: -v (or the --json document) shows it.
    if out.verbose {
        for f in &report.files {
            out.line(&[("file", f.path.display().to_string())]);
        }
    }
    for l in &report.skipped_layers {
        out.line(&[
            ("skipped_layer", l.clone()),
            ("reason", "already present and valid".into()),
        ]);
    }
    if report.already_installed {
        out.line(&[
            ("version", report.version.clone()),
            ("repository", report.repository.clone()),
            ("already_installed", "true".into()),
            (
                "message",
                format!(
                    "{} is already installed from {}; nothing to do",
                    report.version, report.repository
                ),
            ),
        ]);
    } else {
        out.line(&[
            ("version", report.version.clone()),
            ("repository", report.repository.clone()),
            (
                "signature",
                if report.signature_verified { "verified" } else { "none" }.into(),
            ),
            (
                "receipt",
                report
                    .receipt
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ]);
    }
    out.json(&serde_json::to_value(&report).map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?);
    Ok(0)
}

fn package_cmd(out: Out, opts: &flynnrel::ops::package::PackageOptions) -> Result<u8> {
    let mut reporter = progress::Reporter::new(out);
    let mut cb = |p: &str, d: u64, t: u64| reporter.report(p, d, t);
    let report = flynnrel::ops::package::package(opts, &mut cb)?;
    drop(reporter);
    for s in &report.skipped {
        if !out.quiet && !out.json {
            eprintln!("notice: skipped {}", flynnrel::error::escape(s));
        }
    }
    for a in &report.assets {
        out.line(&[
            ("asset", a.name.clone()),
            ("size", a.size.to_string()),
            ("sha512", a.sha512.clone()),
        ]);
    }
    out.line(&[
        ("version", report.version.clone()),
        ("out", report.out_dir.display().to_string()),
        ("assets", report.assets.len().to_string()),
        ("layers", report.layers.len().to_string()),
        ("signed", report.signed.to_string()),
        ("unchanged", report.unchanged.to_string()),
    ]);
    out.json(&serde_json::to_value(&report).map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?);
    Ok(0)
}

fn verify_cmd(g: &Global, out: Out, dir: &std::path::Path, version: Option<&str>) -> Result<u8> {
    let key = g
        .key
        .public_key
        .as_deref()
        .map(flynnrel::model::signature::TrustedKey::parse)
        .transpose()?;
    let repo = g
        .repo
        .repo
        .clone()
        .unwrap_or_else(|| ghrelease::options::DEFAULT_REPOSITORY.to_string());
    let report = flynnrel::ops::verify::verify_dir(dir, key.as_ref(), Some(&repo), version)?;
    out.line(&[
        ("verified", report.dir.display().to_string()),
        ("assets", report.assets.len().to_string()),
        (
            "signature",
            if report.signature_checked {
                "valid"
            } else {
                "not checked"
            }
            .to_string(),
        ),
    ]);
    out.json(&serde_json::to_value(&report).map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?);
    Ok(0)
}

fn serve_cmd(
    out: Out,
    mut opts: serve::ServeOptions,
    ready_file: Option<&std::path::Path>,
    request_log: Option<&std::path::Path>,
) -> Result<u8> {
    let dir = opts.root.clone();
    let log_file = match request_log {
        Some(p) => Some(std::sync::Mutex::new(
            std::os::unix::fs::OpenOptionsExt::custom_flags(
                std::fs::OpenOptions::new().create(true).append(true),
                libc::O_NOFOLLOW,
            )
            .open(p)
            .map_err(|e| Error::io("open the request log", p, e))?,
        )),
        None => None,
    };
    let quiet = out.quiet || out.json;
    opts.log = Some(Box::new(move |r: &serve::LoggedRequest| {
        if let Some(f) = &log_file {
            if let (Ok(mut f), Ok(line)) = (f.lock(), serde_json::to_string(r)) {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
        }
        if !quiet {
            eprintln!(
                "request listener={:?} method={} url={} status={}",
                r.listener,
                output::kv_value(&r.method),
                output::kv_value(&r.url),
                r.status
            );
        }
    }));
    let server = serve::start(opts)?;
    let urls = serde_json::json!({
        "api_url": server.api_url(),
        "web_url": server.web_url(),
        "storage_url": server.storage_url(),
        "root": dir,
    });
    if let Some(p) = ready_file {
        let text = serde_json::to_vec_pretty(&urls)
            .map_err(|e| Error::new(ErrorKind::InvalidData, format!("cannot encode URLs: {e}")))?;
        flynnrel::fsutil::atomic_write(p, &text, 0o644)?;
    }
    out.line(&[
        ("api_url", server.api_url()),
        ("web_url", server.web_url()),
        ("storage_url", server.storage_url()),
    ]);
    out.json(&urls);
    server.wait();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
