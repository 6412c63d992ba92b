//! The packager's sized gzip members (src/model/gz.rs, docs/release-assets.md#gzip-members):
//! other gzip readers (GNU gzip, pigz, tar z, Python's and Go's gzip) read the files, and the
//! parallel reader refuses every malformed, lying or truncated member with an error naming the
//! asset, falls back to streaming for members without a size record, and keeps the gzip-bomb cap.

use std::io::{Read, Write};
use std::process::Command;

use flynnrel::ErrorKind;
use flynnrel::model::gz::{
    self, CHUNK_SIZE, DEFAULT_LEVEL, MAX_MEMBER, MemberStart, ParGzReader, SIZE_SUBFIELD_ID, SIZED_HEADER_LEN,
    read_member_start,
};

fn sample(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 4 == 0 {
                (x >> 16) as u8
            } else {
                b"squashfs layer bytes "[i % 21]
            }
        })
        .collect()
}

fn compress(data: &[u8], threads: usize) -> Vec<u8> {
    let mut w = gz::ParGzWriter::new(Vec::new(), threads, DEFAULT_LEVEL).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().0
}

/// (offset, length) of every member, from the size records.
fn members(file: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < file.len() {
        let mut head = Vec::new();
        let mut r = &file[off..];
        match read_member_start(&mut r, &mut head).unwrap() {
            Some(MemberStart::Sized(len)) => {
                out.push((off, len as usize));
                off += len as usize;
            }
            other => panic!("member at {off} is {other:?}"),
        }
    }
    out
}

/// Reads `file` with the parallel reader: (content, members inflated in parallel) or the error.
fn par_read(file: &[u8], threads: usize, cap: u64) -> flynnrel::Result<(Vec<u8>, u64)> {
    let mut r = ParGzReader::new(file, threads, cap, "layers.tar.gz");
    let mut out = Vec::new();
    match r.read_to_end(&mut out) {
        Ok(_) => Ok((out, r.sized_members())),
        Err(e) => Err(gz::inner_error(&e).unwrap_or_else(|| {
            flynnrel::Error::new(ErrorKind::InvalidData, format!("layers.tar.gz is not valid gzip: {e}"))
        })),
    }
}

fn gzip_c(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn run_stdin(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot run: {e} (script/setup-tools installs it)"));
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn every_member_records_its_size_and_the_output_is_reproducible() {
    let data = sample(5 * CHUNK_SIZE + 777, 1);
    let a = compress(&data, 1);
    assert_eq!(a, compress(&data, 3), "the thread count must not change the bytes");
    let ms = members(&a);
    assert_eq!(ms.len(), 6);
    assert_eq!(ms.iter().map(|m| m.1).sum::<usize>(), a.len());
    for &(off, len) in &ms {
        let m = &a[off..off + len];
        // ID1 ID2 CM FLG=FEXTRA MTIME=0, XLEN 8, subfield FR of 4 bytes = the member's length.
        assert_eq!(&m[..8], &[0x1f, 0x8b, 8, 4, 0, 0, 0, 0]);
        assert_eq!(&m[10..12], &8u16.to_le_bytes());
        assert_eq!(&m[12..14], &SIZE_SUBFIELD_ID);
        assert_eq!(&m[14..16], &4u16.to_le_bytes());
        assert_eq!(&m[16..20], &(len as u32).to_le_bytes());
        assert!(len > SIZED_HEADER_LEN + 8);
    }
    let (out, sized) = par_read(&a, 2, u64::MAX).unwrap();
    assert_eq!(out, data);
    assert_eq!(sized, 6, "every member is inflated in parallel");
}

#[test]
fn other_gzip_readers_read_the_sized_members() {
    let data = sample(3 * CHUNK_SIZE + 4321, 2);
    let a = compress(&data, 2);
    assert_eq!(run_stdin(Command::new("gzip").arg("-dc"), &a), data, "GNU gzip");
    run_stdin(Command::new("gzip").arg("-t"), &a);
    assert_eq!(run_stdin(Command::new("pigz").arg("-dc"), &a), data, "pigz");
    let py = "import gzip,sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))";
    assert_eq!(
        run_stdin(Command::new("python3").args(["-c", py]), &a),
        data,
        "Python gzip"
    );

    // Go's compress/gzip, reading member by member (multistream) and showing the Extra field
    // of the first header as it parsed it.
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("gunzip.go");
    std::fs::write(
        &prog,
        r#"package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
)

func main() {
	r, err := gzip.NewReader(os.Stdin)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(os.Stderr, "extra=%x\n", r.Header.Extra)
	if _, err := io.Copy(os.Stdout, r); err != nil {
		panic(err)
	}
}
"#,
    )
    .unwrap();
    let go_out = run_stdin(
        Command::new("go")
            .arg("run")
            .arg(&prog)
            .env("GO111MODULE", "off")
            .current_dir(dir.path()),
        &a,
    );
    assert_eq!(go_out, data, "Go compress/gzip");

    // tar z: a tar stream compressed by the packager's writer.
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.squashfs"), &data).unwrap();
    std::fs::write(src.join("b.squashfs"), b"small").unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", &src).unwrap();
    let tgz = compress(&builder.into_inner().unwrap(), 2);
    let tgz_path = dir.path().join("layers.tar.gz");
    std::fs::write(&tgz_path, &tgz).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tgz_path)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(out.join("a.squashfs")).unwrap(), data);
    assert_eq!(std::fs::read(out.join("b.squashfs")).unwrap(), b"small");
}

#[test]
fn files_without_size_records_are_streamed() {
    let data = sample(2 * CHUNK_SIZE + 5, 3);
    // gzip -c and flate2 write one member without FEXTRA.
    let plain = run_stdin(Command::new("gzip").args(["-c", "-n"]), &data);
    let (out, sized) = par_read(&plain, 2, u64::MAX).unwrap();
    assert_eq!(out, data);
    assert_eq!(sized, 0);
    // Mixed: sized members, then unsized ones, then sized again: the parallel reader takes the
    // sized run, then streams the rest (which it reads correctly, sized or not).
    let first = sample(2 * CHUNK_SIZE, 4);
    let second = sample(1000, 5);
    let third = sample(CHUNK_SIZE + 3, 6);
    let mut mixed = compress(&first, 2);
    mixed.extend_from_slice(&gzip_c(&second));
    mixed.extend_from_slice(&compress(&third, 2));
    let (out, sized) = par_read(&mixed, 2, u64::MAX).unwrap();
    assert_eq!(out, [first.clone(), second, third].concat());
    assert_eq!(sized, 2, "only the leading sized run is read in parallel");
    // An empty input is what the stream decoder says it is, as before.
    let mut expect = Vec::new();
    let stream = flate2::read::MultiGzDecoder::new(&b""[..]).read_to_end(&mut expect);
    assert_eq!(par_read(b"", 2, 10).is_ok(), stream.is_ok());
}

#[test]
fn the_bomb_cap_holds_before_anything_is_allocated() {
    let zeros = vec![0u8; 8 * CHUNK_SIZE];
    let bomb = compress(&zeros, 2);
    assert!(bomb.len() < 100_000);
    // The cap is checked against the trailers' ISIZE: 8 MiB claimed, 2 MiB allowed.
    let e = par_read(&bomb, 2, 2 * CHUNK_SIZE as u64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(
        e.message().contains("layers.tar.gz") && e.message().contains("gzip bomb"),
        "{e}"
    );
    // gunzip_capped, as binaries and manifests use it.
    let mut sink = std::io::sink();
    let e = gz::gunzip_capped(&bomb[..], &mut sink, CHUNK_SIZE as u64, "flynn-host-linux-amd64.gz").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(e.message().contains("flynn-host-linux-amd64.gz"), "{e}");
    // A member whose ISIZE claims more than a sized member may hold is refused as corrupt.
    let mut one = compress(&zeros[..1000], 1);
    let n = one.len();
    one[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = par_read(&one, 2, u64::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(
        e.message().contains("ISIZE") && e.message().contains(&MAX_MEMBER.to_string()),
        "{e}"
    );
}

/// `file` with the member at `member` changed by `f`.
fn with_member(file: &[u8], member: usize, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let ms = members(file);
    let (off, len) = ms[member];
    let mut m = file[off..off + len].to_vec();
    f(&mut m);
    [&file[..off], &m[..], &file[off + len..]].concat()
}

fn set_size(m: &mut [u8], size: u32) {
    m[16..20].copy_from_slice(&size.to_le_bytes());
}

fn assert_refused(file: &[u8], what: &str) {
    let e = par_read(file, 2, u64::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{what}: {e}");
    assert!(
        e.message().contains("layers.tar.gz") && e.message().contains("not valid gzip"),
        "{what}: {e}"
    );
    let mut sink = std::io::sink();
    let e2 = gz::gunzip_capped(file, &mut sink, u64::MAX, "layers.tar.gz").unwrap_err();
    assert_eq!(e2.kind(), ErrorKind::InvalidData, "{what}: {e2}");
}

#[test]
fn lying_malformed_and_truncated_members_are_refused_naming_the_asset() {
    let data = sample(3 * CHUNK_SIZE, 7);
    let good = compress(&data, 2);
    let ms = members(&good);

    // A size past the end of the file (the last member claims one byte more).
    let past = with_member(&good, 2, |m| {
        let n = m.len() as u32;
        set_size(m, n + 1)
    });
    let e = par_read(&past, 2, u64::MAX).unwrap_err();
    assert!(e.message().contains("past the end of the file"), "{e}");
    assert_refused(&past, "size past EOF");

    // A size that lies short or long by a byte inside the file: the next "member" starts in the
    // wrong place, or the member's deflate data does not end where recorded.
    for delta in [-1i64, 1, 100, -100] {
        let lied = with_member(&good, 0, |m| {
            let n = (m.len() as i64 + delta) as u32;
            set_size(m, n)
        });
        assert_refused(&lied, &format!("size off by {delta}"));
    }

    // Hidden bytes after the trailer, covered by the size record (and ending like the trailer,
    // so that the ISIZE read from the recorded end is the true one).
    let hidden = with_member(&good, 1, |m| {
        let trailer = m[m.len() - 8..].to_vec();
        m.extend_from_slice(b"hidden");
        m.extend_from_slice(&trailer);
        let n = m.len() as u32;
        set_size(m, n)
    });
    let e = par_read(&hidden, 2, u64::MAX).unwrap_err();
    assert!(e.message().contains("ends before its recorded length"), "{e}");

    // Sizes too small for the member's own header and trailer, and too large for a sized member.
    for size in [0u32, 5, SIZED_HEADER_LEN as u32 + 7, MAX_MEMBER as u32 + 1, u32::MAX] {
        let bad = with_member(&good, 0, |m| set_size(m, size));
        assert_refused(&bad, &format!("size {size}"));
    }

    // Malformed extra fields: a subfield running past XLEN, a size subfield of another width, two
    // size subfields, stray bytes after the last subfield.
    let runs_past = with_member(&good, 0, |m| m[14..16].copy_from_slice(&5u16.to_le_bytes()));
    assert_refused(&runs_past, "subfield past XLEN");
    let mut two = good[..SIZED_HEADER_LEN].to_vec();
    two[10..12].copy_from_slice(&16u16.to_le_bytes());
    two.extend_from_slice(&good[12..20]); // a second FR subfield
    let m0 = ms[0];
    let mut two_file = two.clone();
    two_file.extend_from_slice(&good[SIZED_HEADER_LEN..m0.1]);
    let n = two_file.len() as u32;
    two_file[16..20].copy_from_slice(&n.to_le_bytes());
    two_file[24..28].copy_from_slice(&n.to_le_bytes());
    two_file.extend_from_slice(&good[m0.1..]);
    let e = par_read(&two_file, 2, u64::MAX).unwrap_err();
    assert!(e.message().contains("two size subfields"), "{e}");
    let mut stray = good[..SIZED_HEADER_LEN].to_vec();
    stray[10..12].copy_from_slice(&10u16.to_le_bytes());
    stray.extend_from_slice(&[0, 0]);
    stray.extend_from_slice(&good[SIZED_HEADER_LEN..m0.1]);
    let n = stray.len() as u32;
    stray[16..20].copy_from_slice(&n.to_le_bytes());
    stray.extend_from_slice(&good[m0.1..]);
    let e = par_read(&stray, 2, u64::MAX).unwrap_err();
    assert!(e.message().contains("malformed extra field"), "{e}");
    let wide = with_member(&good, 0, |m| {
        // FR claiming 2 bytes of data (XLEN stays 8): a size record of the wrong width.
        m[14..16].copy_from_slice(&2u16.to_le_bytes());
    });
    assert_refused(&wide, "FR of 2 bytes");

    // A corrupt deflate byte, CRC and ISIZE lies in a sized member.
    let flipped = with_member(&good, 1, |m| {
        let mid = m.len() / 2;
        m[mid] ^= 0x40
    });
    assert_refused(&flipped, "flipped deflate byte");
    let crc = with_member(&good, 1, |m| {
        let n = m.len();
        m[n - 8] ^= 1
    });
    assert_refused(&crc, "wrong CRC32");
    for d in [1u32, 1000] {
        let isize_short = with_member(&good, 2, |m| {
            let n = m.len();
            let v = u32::from_le_bytes(m[n - 4..].try_into().unwrap()) - d;
            m[n - 4..].copy_from_slice(&v.to_le_bytes())
        });
        let e = par_read(&isize_short, 2, u64::MAX).unwrap_err();
        assert!(e.message().contains("ISIZE"), "{e}");
        let isize_long = with_member(&good, 2, |m| {
            let n = m.len();
            let v = u32::from_le_bytes(m[n - 4..].try_into().unwrap()) + d;
            m[n - 4..].copy_from_slice(&v.to_le_bytes())
        });
        assert_refused(&isize_long, "ISIZE too large");
    }

    // Truncation anywhere: at member boundaries the rest is missing (never a silent success with
    // less data than the file held unless the cut is exactly between members), inside a member
    // it is an error.
    for cut in [1, 9, 11, 15, SIZED_HEADER_LEN, ms[0].1 - 1, ms[0].1 + 3, good.len() - 1] {
        assert_refused(&good[..cut], &format!("cut at {cut}"));
    }
    let (out, _) = par_read(&good[..ms[0].1], 2, u64::MAX).unwrap();
    assert_eq!(out, data[..CHUNK_SIZE], "a cut between members is a shorter valid file");

    // Trailing garbage after the last member.
    assert_refused(&[&good[..], b"garbage!!!!"].concat(), "trailing garbage");
}
