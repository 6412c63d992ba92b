//! Property-based fuzz targets (proptest, stable Rust, in the style of tests/fuzz.rs) for the
//! gzip member splitter and parallel reader (`gz::ParGzReader`, `gz::read_member_start`):
//! malformed extra fields, sizes that lie, truncated members, members spanning the end of the
//! file, and mixed sized and unsized members. `script/test` runs each for an eighth of
//! PROPTEST_CASES cases (see `config`).
//! Every target checks a property, not only "does not panic": whatever the reader accepts is
//! exactly what flate2's stream decoder reads from the same bytes, and every refusal is
//! `InvalidData` or `TooLarge` naming the asset.

use std::io::{Read, Write};

use flynnrel::ErrorKind;
use flynnrel::model::gz::{self, MemberStart, ParGzReader, read_member_start};
use proptest::prelude::*;

/// An eighth of PROPTEST_CASES (at least 64; 256 by default): each case compresses and reads
/// whole files on thread pools, a hundred times the work of a case in tests/fuzz.rs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(256, |n| (n / 8).max(64));
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const SOURCE: &str = "flynn-host-linux-amd64.gz";

fn sized(data: &[u8]) -> Vec<u8> {
    let mut w = gz::ParGzWriter::new(Vec::new(), 2, 1).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().0
}

fn plain(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The parallel reader's answer: the content, or the error (as the installer sees it).
fn par(file: &[u8], cap: u64) -> Result<Vec<u8>, flynnrel::Error> {
    let mut out = Vec::new();
    gz::gunzip_capped(file, &mut out, cap, SOURCE).map(|_| out)
}

/// flate2's stream decoder on the same bytes (the reference).
fn stream(file: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(file)
        .read_to_end(&mut out)
        .ok()
        .map(|_| out)
}

fn check_refusal(e: &flynnrel::Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::TooLarge),
        "{:?}: {}",
        e.kind(),
        e
    );
    prop_assert!(e.message().contains(SOURCE), "{}", e);
    Ok(())
}

/// One to four members, each sized (ParGzWriter) or unsized (flate2), of up to 3000 bytes that
/// are random, or runs of one byte (which compress), or a mix.
fn members_strategy() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    let data = (
        proptest::collection::vec(any::<u8>(), 0..3000),
        0usize..3000,
        any::<u8>(),
    )
        .prop_map(|(mut random, run, byte)| {
            random.extend(std::iter::repeat_n(byte, run));
            random
        });
    proptest::collection::vec((any::<bool>(), data), 1..5)
}

fn build(members: &[(bool, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    let mut file = Vec::new();
    let mut content = Vec::new();
    for (is_sized, data) in members {
        file.extend_from_slice(&if *is_sized { sized(data) } else { plain(data) });
        content.extend_from_slice(data);
    }
    (file, content)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mixed_sized_and_unsized_members_read_back(members in members_strategy()) {
        let (file, content) = build(&members);
        prop_assert_eq!(par(&file, u64::MAX).unwrap(), content.clone());
        // The sized run at the front is inflated in parallel; the rest streamed.
        let leading = members.iter().take_while(|m| m.0).count() as u64;
        let mut r = ParGzReader::new(&file[..], 2, u64::MAX, SOURCE);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        prop_assert_eq!(out, content.clone());
        prop_assert_eq!(r.sized_members(), leading);
        // The cap: one byte less than the content is refused, the exact size is not.
        if !content.is_empty() {
            let e = par(&file, content.len() as u64 - 1).unwrap_err();
            prop_assert_eq!(e.kind(), ErrorKind::TooLarge);
        }
        prop_assert!(par(&file, content.len() as u64).is_ok());
    }

    #[test]
    fn mutated_files_are_read_exactly_as_the_stream_decoder_reads_them_or_refused(
        members in members_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (mut file, _) = build(&members);
        for (at, b) in &edits {
            let i = at.index(file.len());
            file[i] = *b;
        }
        match par(&file, 1 << 24) {
            // Never a different reading of the same bytes than a standard gzip reader's.
            Ok(out) => prop_assert_eq!(Some(out), stream(&file)),
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn truncated_files_and_members_spanning_the_end_are_refused(
        members in members_strategy(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (file, _) = build(&members);
        let cut = cut.index(file.len());
        let short = &file[..cut];
        match par(short, u64::MAX) {
            // Only a cut between members is a (shorter) valid file, read as the stream decoder does.
            Ok(out) => prop_assert_eq!(Some(out), stream(short)),
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn lying_sizes_and_isizes_are_refused(
        data in proptest::collection::vec(any::<u8>(), 1..5000),
        size in any::<u32>(),
        isize_delta in -3i64..=3,
    ) {
        let good = sized(&data);
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&size.to_le_bytes());
        let n = bad.len();
        let isize = (data.len() as i64 + isize_delta) as u32;
        bad[n - 4..].copy_from_slice(&isize.to_le_bytes());
        let honest = size as usize == good.len() && isize_delta == 0;
        match par(&bad, u64::MAX) {
            Ok(out) => {
                prop_assert!(honest, "accepted a lie: size {} of {}, ISIZE off by {}", size, good.len(), isize_delta);
                prop_assert_eq!(out, data);
            }
            Err(e) => {
                prop_assert!(!honest, "refused an honest member: {}", e);
                check_refusal(&e)?;
            }
        }
    }

    #[test]
    fn arbitrary_extra_fields_never_panic_and_only_sized_headers_are_sized(
        flg in any::<u8>(),
        extra in proptest::collection::vec(any::<u8>(), 0..40),
        xlen_delta in -4i32..4,
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut head = vec![0x1f, 0x8b, 8, flg, 0, 0, 0, 0, 0, 255];
        let xlen = (extra.len() as i32 + xlen_delta).max(0) as u16;
        head.extend_from_slice(&xlen.to_le_bytes());
        head.extend_from_slice(&extra);
        head.extend_from_slice(&rest);
        let mut consumed = Vec::new();
        let mut r = &head[..];
        match read_member_start(&mut r, &mut consumed) {
            Ok(Some(MemberStart::Sized(len))) => {
                prop_assert!(flg & 0x04 != 0 && flg & 0xe0 == 0);
                prop_assert!(len >= consumed.len() as u64 + 8 && len <= gz::MAX_MEMBER);
                // The header read is exactly the fixed part, XLEN and the extra field.
                prop_assert_eq!(consumed.len(), 12 + xlen as usize);
            }
            Ok(Some(MemberStart::Unsized)) => prop_assert!(flg & 0xe0 == 0),
            Ok(None) => prop_assert!(false, "a non-empty input is not the end"),
            Err(what) => prop_assert!(!what.is_empty()),
        }
        // Whole files made of such a header: refused or read as the stream decoder reads them.
        match par(&head, 1 << 20) {
            Ok(out) => prop_assert_eq!(Some(out), stream(&head)),
            Err(e) => check_refusal(&e)?,
        }
    }
}
