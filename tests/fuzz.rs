//! Property-based fuzz targets (proptest, stable Rust) for every parser that reads outside input:
//! versions, checksums files, release JSON, `Link` headers, receipts and tar entry names.
//! `script/test` runs each for a bounded number of cases (PROPTEST_CASES); SECURITY.md shows a
//! longer run. Every target checks a property, not only "does not panic".

use std::cmp::Ordering;

use flynnrel::ErrorKind;
use flynnrel::host::receipt::InstallSource;
use flynnrel::model::checksums::{Checksums, sha512_hex};
use flynnrel::model::layers::flat_entry_name;
use flynnrel::model::version::Version;
use flynnrel::remote::ghrelease::Release;
use flynnrel::remote::ghrelease::link::find_rel;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A version string of one of the three schemes, built from parts.
fn version_strategy() -> impl Strategy<Value = String> {
    let date = (1970u32..2100, 1u32..=12, 1u32..=28, 0u32..30);
    prop_oneof![
        (date.clone(), proptest::option::of(1u32..5)).prop_map(|((y, m, d, n), p)| {
            format!(
                "v{y:04}{m:02}{d:02}.{n}{}",
                p.map(|p| format!("p{p}")).unwrap_or_default()
            )
        }),
        (date, proptest::option::of("[a-z]{1,5}(\\.(0|[1-9][0-9]?))?")).prop_map(|((y, m, d, n), s)| format!(
            "v{y:04}.{m:02}.{d:02}.{n}{}",
            s.map(|s| format!("-{s}")).unwrap_or_default()
        )),
        (
            0u32..20,
            0u32..20,
            0u32..20,
            proptest::option::of("(rc|beta|alpha)\\.(0|[1-9][0-9]?)")
        )
            .prop_map(|(a, b, c, p)| format!("v{a}.{b}.{c}{}", p.map(|p| format!("-{p}")).unwrap_or_default())),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn version_parser_never_panics_and_orders_consistently(s in ".{0,40}", t in ".{0,40}") {
        if let (Ok(a), Ok(b)) = (Version::parse(&s), Version::parse(&t)) {
            match (a.compare(&b), b.compare(&a)) {
                (Ok(x), Ok(y)) => prop_assert_eq!(x, y.reverse()),
                (Err(e), Err(_)) => prop_assert_eq!(e.kind(), ErrorKind::VersionMismatch),
                other => prop_assert!(false, "asymmetric comparison: {:?}", other),
            }
            prop_assert_eq!(a.compare(&a).unwrap(), Ordering::Equal);
        }
    }

    #[test]
    fn generated_versions_parse_and_sort_as_a_total_order(xs in proptest::collection::vec(version_strategy(), 1..12)) {
        let vs: Vec<Version> = xs.iter().map(|x| Version::parse(x).unwrap()).collect();
        for a in &vs {
            for b in &vs {
                if a.scheme() != b.scheme() { continue; }
                for c in &vs {
                    if c.scheme() != a.scheme() { continue; }
                    // Transitivity of <=.
                    if a.compare(b).unwrap().is_le() && b.compare(c).unwrap().is_le() {
                        prop_assert!(a.compare(c).unwrap().is_le(), "{} <= {} <= {} but not {} <= {}", a, b, c, a, c);
                    }
                }
            }
        }
    }

    #[test]
    fn checksums_parser_never_panics_and_only_accepts_plain_names(text in "([0-9a-fA-F]{0,130}[ *]{0,3}[^\n]{0,20}\n){0,6}") {
        if let Ok(c) = Checksums::parse(&text, "fuzz") {
            for (name, hex) in c.iter() {
                prop_assert!(!name.contains('/') && !name.contains('\\') && name != ".." && !name.is_empty());
                prop_assert_eq!(hex.len(), 128);
            }
        }
    }

    #[test]
    fn checksums_written_are_read_back(names in proptest::collection::btree_set("[A-Za-z0-9._-]{1,30}", 1..10)) {
        let mut c = Checksums::new();
        let names: Vec<String> = names.into_iter().filter(|n| n != "." && n != ".." && !n.starts_with('-')).collect();
        prop_assume!(!names.is_empty());
        for n in &names {
            c.insert(n, &sha512_hex(n.as_bytes())).unwrap();
        }
        let back = Checksums::parse(&c.to_text(), "fuzz").unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn release_json_never_panics(text in ".{0,300}") {
        let _ = serde_json::from_str::<Release>(&text);
        let _ = serde_json::from_str::<Vec<Release>>(&text);
    }

    #[test]
    fn release_json_with_arbitrary_field_values(id in any::<u64>(), tag in ".{0,20}", size in any::<u64>(), digest in proptest::option::of(".{0,80}"), draft in any::<bool>()) {
        let j = serde_json::json!({"id": id, "tag_name": tag, "draft": draft, "assets": [
            {"url": "u", "browser_download_url": "b", "id": 1, "name": "n", "size": size, "digest": digest}
        ]});
        let r: Release = serde_json::from_value(j).unwrap();
        prop_assert_eq!(r.assets[0].size, size);
        if let Some(d) = r.assets[0].sha256_digest() {
            prop_assert!(digest.as_deref().unwrap().ends_with(d));
        }
    }

    #[test]
    fn link_header_parser_never_panics_and_finds_generated_links(noise in ".{0,100}", pages in proptest::collection::vec(1u32..1000, 1..5)) {
        let _ = find_rel(&noise, "next");
        let rels = ["next", "last", "prev", "first", "other"];
        let parts: Vec<String> = pages.iter().enumerate()
            .map(|(i, p)| format!("<https://api.github.com/r?page={p}>; rel=\"{}\"", rels[i % rels.len()]))
            .collect();
        let header = parts.join(", ");
        prop_assert_eq!(find_rel(&header, "next"), Some(format!("https://api.github.com/r?page={}", pages[0])));
    }

    #[test]
    fn receipt_parser_never_panics_and_never_rewrites(text in ".{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let p = flynnrel::host::receipt::receipt_path(dir.path());
        std::fs::write(&p, &text).unwrap();
        match InstallSource::load(dir.path()) {
            Ok(Some(r)) => prop_assert!(!r.repository.is_empty()),
            Ok(None) => prop_assert!(false, "an existing file is never 'missing'"),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidReceipt),
        }
        prop_assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "loading never changes the file");
    }

    #[test]
    fn tar_entry_names_accepted_are_single_plain_components(raw in proptest::collection::vec(any::<u8>(), 0..40), path in "[./a-z\\\\]{0,12}") {
        for candidate in [raw.as_slice(), path.as_bytes()] {
            if let Some(name) = flat_entry_name(candidate) {
                let comps: Vec<_> = std::path::Path::new(name).components().collect();
                prop_assert_eq!(comps.len(), 1, "{:?}", name);
                prop_assert!(matches!(comps[0], std::path::Component::Normal(_)), "{:?}", name);
                prop_assert!(!name.contains('\\') && !name.contains('\0'));
            }
        }
    }
}
