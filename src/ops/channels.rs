//! Channel resolution through signed pointers (docs/channels.md#on-the-host): the one place that
//! decides whether a channel is read from its pointer or by version order.
//!
//! With a public key (flag, environment or the receipt's pin) the channel's pointer is fetched
//! from the web host and must verify: signature, repository and channel, expiry, a sequence not
//! below the highest this host accepted, and a release that exists, is signed and has exactly
//! the checksums the pointer binds. Without a key a pointer cannot be trusted and is not read:
//! the channel is the newest release by version order (weaker: no freeze or rollback defence
//! for the channel). A channel for which the host has accepted a pointer needs one from then
//! on; a host that never saw one falls back to version order when the repository has none.

use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result};
use crate::host::receipt::InstallSource;
use crate::model::pointer::POINTER_BRANCH;
use crate::model::signature::TrustedKey;
use crate::remote::ghrelease::channel::FetchedPointer;
use crate::remote::ghrelease::{Channel, Client};

/// The verified pointer of `client`'s repository's `channel`, or `None` when the channel is to
/// be resolved by version order (no key; or no pointer published and none accepted before).
pub fn pointer_for(
    client: &Client,
    channel: Channel,
    key: Option<&TrustedKey>,
    receipt: Option<&InstallSource>,
    now: SystemTime,
) -> Result<Option<FetchedPointer>> {
    let Some(key) = key else { return Ok(None) };
    let repo = client.repository();
    let seen = receipt.and_then(|r| r.channel_sequence(&repo, channel.as_str()));
    match client.channel_pointer(channel, key, now)? {
        None => match seen {
            Some(h) => Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "this host accepted sequence {h} of the signed pointer of {repo} channel {channel}, but the \
                     pointer is gone from {}/{repo}/raw/{POINTER_BRANCH}/channels/{channel}.json: a mirror or \
                     attacker is hiding it; refusing to fall back to version order",
                    client.options().web_url.trim_end_matches('/')
                ),
            )),
            None => Ok(None),
        },
        Some(f) => {
            crate::model::pointer::check_sequence(&f.pointer, seen, &f.source)?;
            client.verify_pointer_release(&f, key)?;
            Ok(Some(f))
        }
    }
}

/// Which release a channel selects, for `flynnrel releases --channel` (the same rule as install
/// and update, without a receipt): the signed pointer's version when `key` is given and the
/// channel has one, else the newest release of the channel by version order among `releases`.
pub fn selected(
    client: &Client,
    releases: &[crate::remote::ghrelease::Release],
    channel: Channel,
    key: Option<&TrustedKey>,
) -> Result<(Option<String>, Option<FetchedPointer>)> {
    if let Some(f) = pointer_for(client, channel, key, None, SystemTime::now())? {
        return Ok((Some(f.pointer.version.clone()), Some(f)));
    }
    let v = crate::remote::ghrelease::select_channel(releases, channel, None)?.map(|(r, _)| r.tag_name.clone());
    Ok((v, None))
}
