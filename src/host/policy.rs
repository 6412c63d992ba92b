//! The version policy (docs/verification.md#anti-rollback): the one place that decides whether a target version may be
//! installed on a host, for `install`, `update` and every front-end that calls them.
//!
//! What a host has *seen* is both the receipt's `highest_seen_version` and the receipt's own
//! `version` (a four-field receipt from before `highest_seen_version` existed still protects the
//! version it names). A target below what was seen, or of another version scheme than what was
//! seen (which one is "newer" is undefined, and guessing opens a rollback), is refused unless the
//! operator names that version explicitly and allows the downgrade.

use std::cmp::Ordering;

use crate::error::{Error, ErrorKind, Hint, Result};
use crate::host::receipt::InstallSource;
use crate::model::version::{Installed, Version};

/// How the target was chosen and what the operator allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Permission {
    /// The operator named the target version (`--version`), rather than a channel choosing it.
    pub explicit: bool,
    /// The operator allowed going below what the host has seen (`--allow-downgrade`); only
    /// honoured together with `explicit`.
    pub allow_downgrade: bool,
}

impl Permission {
    fn may_go_back(self) -> bool {
        self.explicit && self.allow_downgrade
    }
}

/// The versions a receipt says the host has seen: `highest_seen_version` and `version`, parsed
/// (unparsable or empty values are not versions and are skipped).
pub fn seen_versions(receipt: &InstallSource) -> Vec<Version> {
    [receipt.highest_seen_version.as_deref(), Some(receipt.version.as_str())]
        .into_iter()
        .flatten()
        .filter_map(|s| Version::parse(s).ok())
        .collect()
}

/// The highest version the receipt has seen in `target`'s scheme, if any.
pub fn highest_seen_in_scheme(receipt: &InstallSource, target: &Version) -> Option<Version> {
    let mut best: Option<Version> = None;
    for v in seen_versions(receipt) {
        if v.scheme() != target.scheme() {
            continue;
        }
        if best.as_ref().is_none_or(|b| v.compare(b).is_ok_and(Ordering::is_gt)) {
            best = Some(v);
        }
    }
    best
}

/// Refuses `target` when it is below what `receipt` has seen, or of another scheme, unless
/// `perm` names it explicitly and allows the downgrade. `advice` is the command that would do it
/// on purpose (the front-end's own words), appended to the refusal.
pub fn check_not_rolled_back(receipt: &InstallSource, target: &Version, perm: Permission) -> Result<()> {
    if perm.may_go_back() {
        return Ok(());
    }
    for seen in seen_versions(receipt) {
        if seen.scheme() != target.scheme() {
            return Err(Error::new(
                ErrorKind::DowngradeRefused,
                format!(
                    "{target} is a {} version but this host has run {seen}, a {} version; the two cannot be \
                     ordered, so changing the version scheme is refused (anti-rollback)",
                    target.scheme(),
                    seen.scheme()
                ),
            )
            .with_hint(Hint::AllowDowngrade {
                version: target.as_str().to_string(),
            }));
        }
        if target.compare(&seen)?.is_lt() {
            return Err(Error::new(
                ErrorKind::DowngradeRefused,
                format!(
                    "{target} is older than {seen}, which this host has already run or accepted \
                     (anti-rollback)"
                ),
            )
            .with_hint(Hint::AllowDowngrade {
                version: target.as_str().to_string(),
            }));
        }
    }
    Ok(())
}

/// The `highest_seen_version` after the host switched to `target`: what it was (counting the
/// receipt's own version) when that is higher in the same scheme, else `target`. It never goes
/// down within a scheme; a scheme change (only reached with explicit permission) restarts it.
pub fn next_highest_seen(old: Option<&InstallSource>, target: &Version) -> String {
    match old.and_then(|r| highest_seen_in_scheme(r, target)) {
        Some(h) if h.compare(target).is_ok_and(Ordering::is_gt) => h.as_str().to_string(),
        _ => target.as_str().to_string(),
    }
}

/// What `update` should do about `target` given what runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateVerdict {
    /// Switch to the target.
    Apply,
    /// Nothing to do: the target is what runs, or a channel offered something older.
    UpToDate,
}

/// The update rules on top of [`check_not_rolled_back`]: an equal version is up to date unless
/// forced; an older one offered by a channel is ignored (never downgrade on our own); an older or
/// other-scheme one named explicitly needs `allow_downgrade`; a development build is never updated
/// without an explicit target or `force`.
pub fn update_verdict(
    current: &Installed,
    target: &Version,
    perm: Permission,
    force: bool,
    check: bool,
) -> Result<UpdateVerdict> {
    match current {
        Installed::Development(name) => {
            if !check && !perm.explicit && !force {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "this host runs a development build ({name}); it is never updated without an explicit \
                         target version (or a forced update)"
                    ),
                )
                .with_hint(Hint::NameVersion {
                    version: target.as_str().to_string(),
                }));
            }
            Ok(UpdateVerdict::Apply)
        }
        Installed::Release(cur) => {
            let ord = match target.compare(cur) {
                Ok(o) => o,
                // Another scheme: not "older" and not "newer". A channel never switches schemes on
                // its own; an explicit target does so only with permission.
                Err(_) if !perm.explicit => return Ok(UpdateVerdict::UpToDate),
                Err(_) if perm.allow_downgrade => return Ok(UpdateVerdict::Apply),
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::DowngradeRefused,
                        format!(
                            "{target} is a {} version and the installed {cur} is a {} version; changing the \
                             version scheme needs explicit permission",
                            target.scheme(),
                            cur.scheme()
                        ),
                    )
                    .with_hint(Hint::AllowDowngrade {
                        version: target.as_str().to_string(),
                    }));
                }
            };
            if ord.is_eq() && !force {
                return Ok(UpdateVerdict::UpToDate);
            }
            if ord.is_lt() {
                if !perm.explicit {
                    return Ok(UpdateVerdict::UpToDate);
                }
                if !perm.allow_downgrade {
                    return Err(Error::new(
                        ErrorKind::DowngradeRefused,
                        format!("{target} is older than the installed {cur}; downgrading needs explicit permission"),
                    )
                    .with_hint(Hint::AllowDowngrade {
                        version: target.as_str().to_string(),
                    }));
                }
            }
            Ok(UpdateVerdict::Apply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(version: &str, highest: Option<&str>) -> InstallSource {
        let mut r = InstallSource::new_github("flynn/flynn", version, std::time::SystemTime::now());
        r.highest_seen_version = highest.map(str::to_string);
        r
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    const CHANNEL: Permission = Permission {
        explicit: false,
        allow_downgrade: false,
    };
    const EXPLICIT: Permission = Permission {
        explicit: true,
        allow_downgrade: false,
    };
    const ALLOWED: Permission = Permission {
        explicit: true,
        allow_downgrade: true,
    };

    #[test]
    fn the_receipt_version_counts_as_seen_without_highest_seen_version() {
        let r = receipt("v2024.01.27.10", None);
        let e = check_not_rolled_back(&r, &v("v2024.01.27.9"), EXPLICIT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DowngradeRefused, "{e}");
        assert!(e.message().contains("v2024.01.27.10"), "{e}");
        check_not_rolled_back(&r, &v("v2024.01.27.11"), CHANNEL).unwrap();
        check_not_rolled_back(&r, &v("v2024.01.27.9"), ALLOWED).unwrap();
    }

    #[test]
    fn a_scheme_change_is_refused_unless_explicitly_allowed() {
        let r = receipt("v2024.01.27.9", Some("v2024.01.27.9"));
        for perm in [CHANNEL, EXPLICIT] {
            let e = check_not_rolled_back(&r, &v("v20240101.0"), perm).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DowngradeRefused, "{e}");
            assert!(e.message().contains("scheme"), "{e}");
            assert_eq!(
                e.hint(),
                Some(&Hint::AllowDowngrade {
                    version: "v20240101.0".into()
                }),
                "the advice travels as data"
            );
        }
        check_not_rolled_back(&r, &v("v20240101.0"), ALLOWED).unwrap();
    }

    #[test]
    fn highest_seen_never_goes_down_and_restarts_only_on_a_scheme_change() {
        let r = receipt("v2024.01.27.10", Some("v2024.01.27.12"));
        assert_eq!(next_highest_seen(Some(&r), &v("v2024.01.27.11")), "v2024.01.27.12");
        assert_eq!(next_highest_seen(Some(&r), &v("v2024.01.27.13")), "v2024.01.27.13");
        let four_fields = receipt("v2024.01.27.10", None);
        assert_eq!(
            next_highest_seen(Some(&four_fields), &v("v2024.01.27.9")),
            "v2024.01.27.10"
        );
        assert_eq!(next_highest_seen(Some(&r), &v("v20240101.0")), "v20240101.0");
        assert_eq!(next_highest_seen(None, &v("v1.0.0")), "v1.0.0");
    }

    #[test]
    fn update_verdicts() {
        let cur = Installed::parse("v1.2.0");
        let up = |t: &str, p, force| update_verdict(&cur, &v(t), p, force, false);
        assert_eq!(up("v1.3.0", CHANNEL, false).unwrap(), UpdateVerdict::Apply);
        assert_eq!(up("v1.2.0", CHANNEL, false).unwrap(), UpdateVerdict::UpToDate);
        assert_eq!(up("v1.2.0", CHANNEL, true).unwrap(), UpdateVerdict::Apply);
        assert_eq!(up("v1.1.0", CHANNEL, false).unwrap(), UpdateVerdict::UpToDate);
        assert_eq!(
            up("v1.1.0", EXPLICIT, false).unwrap_err().kind(),
            ErrorKind::DowngradeRefused
        );
        assert_eq!(up("v1.1.0", ALLOWED, false).unwrap(), UpdateVerdict::Apply);
        assert_eq!(up("v20240101.0", CHANNEL, false).unwrap(), UpdateVerdict::UpToDate);
        assert_eq!(
            up("v20240101.0", EXPLICIT, false).unwrap_err().kind(),
            ErrorKind::DowngradeRefused
        );
        assert_eq!(up("v20240101.0", ALLOWED, false).unwrap(), UpdateVerdict::Apply);
        let dev = Installed::parse("dev");
        assert_eq!(
            update_verdict(&dev, &v("v1.0.0"), CHANNEL, false, false)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            update_verdict(&dev, &v("v1.0.0"), CHANNEL, false, true).unwrap(),
            UpdateVerdict::Apply
        );
    }
}
