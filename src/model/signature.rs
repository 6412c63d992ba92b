//! minisign signatures over `checksums.sha512` (docs/verification.md#signatures).
//!
//! A release is signed by signing its checksums file; every other asset is bound to it by its
//! sha512. The signature's *trusted comment* (which the signature covers) must carry the tokens
//! `repo=<owner/name>` and `version=<tag>` of the release being installed, so a valid signature
//! copied from another release or another repository is refused (mix-and-match). Keys and
//! signatures are the `minisign` tool's own formats: a release signed with
//! `minisign -S -t "repo=flynn/flynn version=v20240127.0" -m checksums.sha512` verifies here.

use std::io::Cursor;
use std::path::Path;

use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use crate::error::{Error, ErrorKind, Result};

/// The signature asset's name.
pub const SIGNATURE_ASSET: &str = "checksums.sha512.minisig";
/// The environment variable holding the password of an encrypted secret key.
pub const SIGN_PASSWORD_ENV: &str = "FLYNN_RELEASE_SIGN_PASSWORD";

/// A minisign public key, as given by the operator: a base64 key (`RWQ…`), the text of a
/// `minisign.pub` file, or the path of such a file.
#[derive(Clone)]
pub struct TrustedKey {
    key: PublicKey,
    base64: String,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey({})", self.base64)
    }
}

impl TrustedKey {
    /// Parses a key given as base64, `.pub` file text, or a path to a `.pub` file.
    /// `InvalidArgument` when none of these fits.
    pub fn parse(given: &str) -> Result<TrustedKey> {
        let given = given.trim();
        let bad = |why: String| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "invalid minisign public key {given:?}: {why}; give the base64 key (the RWQ… \
                     line of minisign.pub) or the path of minisign.pub"
                ),
            )
        };
        let text = if given.contains('\n') || given.starts_with("RW") {
            given.to_string()
        } else if Path::new(given).is_file() {
            read_text(Path::new(given), "the public key")?
        } else {
            given.to_string()
        };
        let key = if text.trim_start().starts_with("untrusted comment:") {
            PublicKeyBox::from_string(&text)
                .and_then(PublicKeyBox::into_public_key)
                .map_err(|e| bad(e.to_string()))?
        } else {
            PublicKey::from_base64(text.trim()).map_err(|e| bad(e.to_string()))?
        };
        // minisign 0.10 reads any two bytes as the algorithm; only Ed25519 (`Ed`) keys exist, so
        // anything else is a corrupt or foreign key, refused here rather than at the first verify.
        let bytes = key.to_bytes();
        if bytes.get(..2) != Some(&KEY_ALG[..]) {
            return Err(bad(format!(
                "its algorithm id is {:?}, a minisign key's is \"Ed\"",
                String::from_utf8_lossy(bytes.get(..2).unwrap_or_default())
            )));
        }
        let base64 = key.to_base64();
        Ok(TrustedKey { key, base64 })
    }

    /// The key as minisign's base64 (`RWQ…`), the form stored in the receipt.
    pub fn to_base64(&self) -> &str {
        &self.base64
    }
}

/// A key file's text: a regular file of at most 64 KiB, UTF-8.
fn read_text(path: &Path, what: &str) -> Result<String> {
    let data = crate::fsutil::read_regular_required(path, 64 << 10)?;
    String::from_utf8(data).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} {} is not UTF-8 text; give a minisign key file", path.display()),
        )
    })
}

/// Checks that `signature` (the text of `checksums.sha512.minisig`, from `sig_source`) is a
/// valid signature of `checksums` by `key`, and that its trusted comment names `repo` and
/// `version`. `SignatureInvalid` otherwise, saying which check failed.
pub fn verify_checksums(
    key: &TrustedKey,
    checksums: &[u8],
    signature: &str,
    sig_source: &str,
    repo: &str,
    version: &str,
) -> Result<()> {
    verify_bound(
        key,
        checksums,
        "checksums.sha512",
        signature,
        &[("repo", repo, "repository"), ("version", version, "version")],
    )
    .map(|_| ())
    .map_err(|why| {
        Error::new(
            ErrorKind::SignatureInvalid,
            format!("signature {sig_source} is not acceptable: {why}; do not install this release"),
        )
    })
}

/// Checks that `signature` is a valid minisign signature of `data` (the file
/// `what`) by `key`, and that its trusted comment carries every `name=value` token of `bindings`
/// as a whole token (the third item names the thing, for the message: "a signature for another
/// <thing>"). Returns the trusted comment, or why the signature is refused. Release signatures
/// bind `repo=` and `version=`; channel pointers (crate::model::pointer) bind `repo=` and
/// `channel=`.
pub fn verify_bound(
    key: &TrustedKey,
    data: &[u8],
    what: &str,
    signature: &str,
    bindings: &[(&str, &str, &str)],
) -> std::result::Result<String, String> {
    check_signature_text(signature, key)?;
    let sig = SignatureBox::from_string(signature).map_err(|e| format!("cannot parse it ({e})"))?;
    // The text was checked above to be exactly what the crate can verify without panicking; the
    // unwind guard keeps a crate bug we have not met yet a refusal, never a crash.
    let verified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        minisign::verify(&key.key, &sig, Cursor::new(data), true, false, false)
    }))
    .map_err(|_| "the minisign verifier failed on it (malformed signature)".to_string())?;
    verified.map_err(|e| {
        if e.to_string().starts_with("Comment signature") {
            "its trusted comment was changed after signing".to_string()
        } else {
            format!("it does not verify {what} with public key {} ({e})", key.base64)
        }
    })?;
    let comment = sig.trusted_comment().map_err(|e| format!("no trusted comment ({e})"))?;
    let tokens: Vec<&str> = comment.split_whitespace().collect();
    for (name, value, thing) in bindings {
        let want = format!("{name}={value}");
        if !tokens.contains(&want.as_str()) {
            return Err(format!(
                "its trusted comment {comment:?} does not name {want} (a signature for another {thing})"
            ));
        }
    }
    Ok(comment)
}

/// The algorithm id of a minisign key and of a plain signature; `ED` marks a prehashed signature.
const KEY_ALG: [u8; 2] = *b"Ed";
const PREHASHED_ALG: [u8; 2] = *b"ED";
/// Decoded sizes of the signature line (algorithm, key id, Ed25519 signature) and of the
/// signature over the trusted comment.
const SIGNATURE_LINE_BYTES: usize = 2 + 8 + 64;
const COMMENT_SIGNATURE_BYTES: usize = 64;
const UNTRUSTED_PREFIX: &str = "untrusted comment:";
const TRUSTED_PREFIX: &str = "trusted comment: ";

/// Checks the shape of a minisign signature file before the minisign crate sees it: four lines,
/// both base64 lines decoding to exactly the sizes minisign writes, a known algorithm, the key id
/// of `key`, and a trusted comment without surrounding whitespace. minisign 0.10 panics on a
/// comment signature shorter than 64 bytes and silently trims the trusted comment (so a comment
/// with surrounding whitespace can never verify); each case gets its own message here.
fn check_signature_text(text: &str, key: &TrustedKey) -> std::result::Result<(), String> {
    use ct_codecs::{Base64, Decoder};
    let lines: Vec<&str> = text.lines().collect();
    let used = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |i| i + 1);
    if lines.len() < 4 || used > 4 {
        return Err(format!(
            "it has {} lines, a minisign signature has 4 (untrusted comment, signature, trusted \
             comment, comment signature)",
            used.max(lines.len().min(4))
        ));
    }
    if !lines[0].starts_with(UNTRUSTED_PREFIX) {
        return Err(format!("line 1 does not start with {UNTRUSTED_PREFIX:?}"));
    }
    let decode = |line: &str, n: usize, what: &str| -> std::result::Result<Vec<u8>, String> {
        let bytes = Base64::decode_to_vec(line.trim(), None).map_err(|_| format!("{what} is not base64"))?;
        if bytes.len() != n {
            return Err(format!("{what} decodes to {} bytes, minisign writes {n}", bytes.len()));
        }
        Ok(bytes)
    };
    let sig = decode(lines[1], SIGNATURE_LINE_BYTES, "line 2 (the signature)")?;
    if sig[..2] != KEY_ALG && sig[..2] != PREHASHED_ALG {
        return Err(format!(
            "line 2 names the unknown algorithm {:?} (minisign's are \"Ed\" and \"ED\")",
            String::from_utf8_lossy(&sig[..2])
        ));
    }
    let key_id = &key.key.to_bytes()[2..10];
    if sig[2..10] != *key_id {
        return Err(format!(
            "it was made by key id {}, not by the trusted public key {} (key id {})",
            key_id_hex(&sig[2..10]),
            key.base64,
            key_id_hex(key_id)
        ));
    }
    let Some(comment) = lines[2].strip_prefix(TRUSTED_PREFIX) else {
        return Err(format!("line 3 does not start with {TRUSTED_PREFIX:?}"));
    };
    if comment.trim() != comment {
        return Err(format!(
            "its trusted comment {comment:?} begins or ends with whitespace, which minisign \
             readers drop, so it can never verify; sign again with a trusted comment that has none"
        ));
    }
    decode(
        lines[3],
        COMMENT_SIGNATURE_BYTES,
        "line 4 (the trusted comment's signature)",
    )?;
    Ok(())
}

/// A key id as minisign prints it: the 8 bytes as a little-endian number in upper-case hex.
fn key_id_hex(id: &[u8]) -> String {
    id.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// The trusted comment a release signature carries.
pub fn trusted_comment(repo: &str, version: &str, timestamp: u64) -> String {
    format!("timestamp:{timestamp} file:checksums.sha512 repo={repo} version={version}")
}

/// Loads a minisign secret key file; an encrypted one needs `password`.
/// Returns the key and its public half (base64).
pub fn load_secret_key(path: &Path, password: Option<String>) -> Result<(SecretKey, String)> {
    let text = read_text(path, "the secret key")?;
    let sk_box = SecretKeyBox::from_string(&text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{} is not a minisign secret key: {e}", path.display()),
        )
    })?;
    let had_password = password.is_some();
    let sk = match password {
        Some(pw) => sk_box.into_secret_key(Some(pw)),
        None => sk_box
            .into_unencrypted_secret_key()
            .or_else(|e| unencrypted_without_checksum(&text).ok_or(e)),
    }
    .map_err(|e| {
        let hint = if had_password {
            "check FLYNN_RELEASE_SIGN_PASSWORD".to_string()
        } else {
            format!("if it is password-protected, set {SIGN_PASSWORD_ENV}")
        };
        Error::new(
            ErrorKind::InvalidArgument,
            format!("cannot use secret key {}: {e}; {hint}", path.display()),
        )
    })?;
    let pk = PublicKey::from_secret_key(&sk).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("cannot derive the public key of {}: {e}", path.display()),
        )
    })?;
    Ok((sk, pk.to_base64()))
}

/// The minisign tool (0.11) writes an all-zero checksum into unencrypted (`-W`) secret keys, which
/// the minisign crate then rejects as corrupt. Such a key is still usable: read its bytes directly
/// when it is unencrypted and its checksum is all zeros. (A signature made with it verifies against
/// the tool's public key; `tests/package.rs` checks that with the real tool.)
fn unencrypted_without_checksum(text: &str) -> Option<SecretKey> {
    use ct_codecs::{Base64, Decoder};
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))?;
    let bytes = Base64::decode_to_vec(line, None).ok()?;
    // Layout: sig_alg(2) kdf_alg(2) chk_alg(2) salt(32) opslimit(8) memlimit(8) keynum(8) sk(64) chk(32).
    if bytes.len() != 158 || bytes[2..4] != [0, 0] || bytes[126..].iter().any(|&b| b != 0) {
        return None;
    }
    let sk = SecretKey::from_bytes(&bytes).ok()?;
    (!sk.is_encrypted()).then_some(sk)
}

/// Signs `checksums` with `sk`, binding `repo` and `version` in the trusted comment. Returns the
/// text of `checksums.sha512.minisig`.
pub fn sign_checksums(sk: &SecretKey, checksums: &[u8], repo: &str, version: &str) -> Result<String> {
    let comment = trusted_comment(repo, version, unix_now());
    sign_with_comment(sk, checksums, "checksums.sha512", &comment)
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs `data` (the file `what`) with `sk` and the trusted comment `comment` (which must not
/// begin or end with whitespace: minisign readers trim it). Returns the `.minisig` text.
pub fn sign_with_comment(sk: &SecretKey, data: &[u8], what: &str, comment: &str) -> Result<String> {
    let sig = minisign::sign(
        None,
        sk,
        Cursor::new(data),
        Some(comment),
        Some("signature from flynnrel"),
    )
    .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("signing {what} failed: {e}")))?;
    Ok(sig.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use minisign::KeyPair;

    fn keypair() -> (SecretKey, TrustedKey) {
        let kp = KeyPair::generate_unencrypted_keypair().unwrap();
        let pk = TrustedKey::parse(&kp.pk.to_base64()).unwrap();
        (kp.sk, pk)
    }

    #[test]
    fn sign_and_verify_binds_repo_and_version() {
        let (sk, pk) = keypair();
        let data = b"abc  flynn-host-linux-amd64.gz\n";
        let sig = sign_checksums(&sk, data, "flynn/flynn", "v20240127.0").unwrap();
        verify_checksums(&pk, data, &sig, "x.minisig", "flynn/flynn", "v20240127.0").unwrap();

        let e = verify_checksums(&pk, data, &sig, "x.minisig", "flynn/flynn", "v20240128.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
        assert!(
            e.message().contains("version=v20240128.0") && e.message().contains("x.minisig"),
            "{e}"
        );
        let e = verify_checksums(&pk, data, &sig, "x.minisig", "evil/flynn", "v20240127.0").unwrap_err();
        assert!(e.message().contains("repo=evil/flynn"), "{e}");
        // A token must match whole: a version that merely starts the same is refused.
        let e = verify_checksums(&pk, data, &sig, "x", "flynn/flynn", "v20240127").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
    }

    #[test]
    fn tampered_data_wrong_key_and_garbage_are_refused() {
        let (sk, pk) = keypair();
        let (_, other) = keypair();
        let sig = sign_checksums(&sk, b"data", "a/b", "v1.0.0").unwrap();
        for (key, data, sig) in [
            (&pk, &b"DATA"[..], sig.as_str()),
            (&other, &b"data"[..], sig.as_str()),
            (&pk, &b"data"[..], "garbage"),
        ] {
            let e = verify_checksums(key, data, sig, "s", "a/b", "v1.0.0").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::SignatureInvalid, "{e}");
        }
    }

    /// Replace line `n` (0-based) of a signature file.
    fn with_line(sig: &str, n: usize, line: &str) -> String {
        let mut lines: Vec<String> = sig.lines().map(str::to_string).collect();
        lines[n] = line.to_string();
        lines.join("\n") + "\n"
    }

    fn decoded(line: &str) -> Vec<u8> {
        use ct_codecs::{Base64, Decoder};
        Base64::decode_to_vec(line.trim(), None).unwrap()
    }

    fn encoded(bytes: &[u8]) -> String {
        use ct_codecs::{Base64, Encoder};
        Base64::encode_to_string(bytes).unwrap()
    }

    #[test]
    fn every_truncation_of_either_signature_line_is_refused_without_panicking() {
        // A genuine signature with its second or fourth line cut to each shorter length (and
        // one byte longer): minisign 0.10 panics on a comment signature under 64 bytes.
        let (sk, pk) = keypair();
        let data = b"abc  flynn-host-linux-amd64.gz\n";
        let sig = sign_checksums(&sk, data, "a/b", "v1.0.0").unwrap();
        let lines: Vec<&str> = sig.lines().collect();
        for (n, full) in [(1usize, SIGNATURE_LINE_BYTES), (3, COMMENT_SIGNATURE_BYTES)] {
            let bytes = decoded(lines[n]);
            assert_eq!(bytes.len(), full);
            let mut longer = bytes.clone();
            longer.push(0);
            for cut in (0..full).map(|k| bytes[..k].to_vec()).chain([longer]) {
                let bad = with_line(&sig, n, &encoded(&cut));
                let e = std::panic::catch_unwind(|| verify_checksums(&pk, data, &bad, "s.minisig", "a/b", "v1.0.0"))
                    .unwrap_or_else(|_| panic!("line {} of {} bytes panicked", n + 1, cut.len()))
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::SignatureInvalid, "{e}");
                let want = format!("line {} ", n + 1);
                assert!(
                    e.message().contains("s.minisig") && e.message().contains(&want),
                    "{} bytes: {e}",
                    cut.len()
                );
            }
        }
        // The untouched signature still verifies.
        verify_checksums(&pk, data, &sig, "s.minisig", "a/b", "v1.0.0").unwrap();
    }

    #[test]
    fn a_trusted_comment_with_surrounding_whitespace_is_named_as_the_cause() {
        let (sk, pk) = keypair();
        let data = b"x";
        // Signed as given, with leading whitespace; minisign readers trim it, so it cannot verify.
        let sig = minisign::sign(
            None,
            &sk,
            Cursor::new(&data[..]),
            Some("  repo=a/b version=v1.0.0"),
            None,
        )
        .unwrap()
        .into_string();
        let e = verify_checksums(&pk, data, &sig, "s.minisig", "a/b", "v1.0.0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
        assert!(e.message().contains("whitespace"), "{e}");
        assert!(!e.message().contains("does not verify checksums"), "{e}");
        // An edited trusted comment is reported as such, not as a checksums mismatch.
        let good = sign_checksums(&sk, data, "a/b", "v1.0.0").unwrap();
        let edited = good.replace("version=v1.0.0", "version=v1.0.1");
        let e = verify_checksums(&pk, data, &edited, "s.minisig", "a/b", "v1.0.1").unwrap_err();
        assert!(e.message().contains("trusted comment was changed"), "{e}");
        // A signature by another key names both key ids.
        let (_, other) = keypair();
        let e = verify_checksums(&other, data, &good, "s.minisig", "a/b", "v1.0.0").unwrap_err();
        assert!(
            e.message().contains("key id") && e.message().contains(other.to_base64()),
            "{e}"
        );
    }

    #[test]
    fn a_key_whose_algorithm_is_not_ed25519_is_refused() {
        let kp = KeyPair::generate_unencrypted_keypair().unwrap();
        let mut bytes = decoded(&kp.pk.to_base64());
        for alg in [*b"ED", *b"Xx", [0, 0]] {
            bytes[..2].copy_from_slice(&alg);
            let e = TrustedKey::parse(&encoded(&bytes)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains("algorithm id"), "{e}");
        }
    }

    #[test]
    fn key_forms() {
        let kp = KeyPair::generate_unencrypted_keypair().unwrap();
        let b64 = kp.pk.to_base64();
        let boxed = kp.pk.to_box().unwrap().into_string();
        assert_eq!(TrustedKey::parse(&boxed).unwrap().to_base64(), b64);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minisign.pub");
        std::fs::write(&p, &boxed).unwrap();
        assert_eq!(TrustedKey::parse(p.to_str().unwrap()).unwrap().to_base64(), b64);
        for bad in ["", "RWQnope", "/no/such/file.pub"] {
            assert_eq!(
                TrustedKey::parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_key_files_plain_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let kp = KeyPair::generate_unencrypted_keypair().unwrap();
        let p = dir.path().join("plain.key");
        std::fs::write(&p, kp.sk.to_box(None).unwrap().into_string()).unwrap();
        let (_, pk) = load_secret_key(&p, None).unwrap();
        assert_eq!(pk, kp.pk.to_base64());

        let kp = KeyPair::generate_encrypted_keypair(Some("hunter2".into())).unwrap();
        let p = dir.path().join("enc.key");
        std::fs::write(&p, kp.sk.to_box(None).unwrap().into_string()).unwrap();
        let (sk, pk) = load_secret_key(&p, Some("hunter2".into())).unwrap();
        assert_eq!(pk, kp.pk.to_base64());
        let sig = sign_checksums(&sk, b"x", "a/b", "v1.0.0").unwrap();
        verify_checksums(&TrustedKey::parse(&pk).unwrap(), b"x", &sig, "s", "a/b", "v1.0.0").unwrap();
        let e = load_secret_key(&p, None).unwrap_err();
        assert!(e.message().contains(SIGN_PASSWORD_ENV), "{e}");
        assert!(load_secret_key(&p, Some("wrong".into())).is_err());
    }
}
