//! gzip in both directions: fast, parallel, reproducible compression for packaging, and capped
//! streaming decompression for installing.
//!
//! Compression splits the input into fixed-size chunks and compresses each with libdeflate as an
//! independent gzip member (mtime 0, no name), on a pool of threads, writing the members in
//! order. A sequence of gzip members is a valid gzip file (RFC 1952 §2.2) that `gzip -d`, `tar z`,
//! Go's `compress/gzip` and flate2's `MultiGzDecoder` read as one stream. The output depends only
//! on the input, the level and the chunk size, never on the number of threads or timing, so it is
//! reproducible. Memory is bounded: at most `2 × threads + 2` chunks are in flight.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha512};

use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::hex;

/// Input bytes per gzip member. Large enough that restarting the dictionary per member costs
/// well under 0.5% of ratio, small enough to keep every core busy on a single large file.
pub const CHUNK_SIZE: usize = 1 << 20;
/// The default compression level (libdeflate's 6 compresses at least as well as gzip -6).
pub const DEFAULT_LEVEL: i32 = 6;

/// The number of worker threads to use by default: every available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What a finished compression produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzSummary {
    /// Uncompressed bytes consumed.
    pub bytes_in: u64,
    /// Compressed bytes written.
    pub bytes_out: u64,
    /// Lowercase hex sha512 of the compressed bytes (hashed while writing).
    pub sha512: String,
}

type Job = (u64, Vec<u8>);
type Done = (u64, Vec<u8>);

/// A `Write` that gzips what it is given on a pool of threads and writes the result, in order,
/// to the inner writer while hashing it. Call [`ParGzWriter::finish`] to flush and get the inner
/// writer and the summary back; dropping it without `finish` abandons the output.
pub struct ParGzWriter<W: Write + Send + 'static> {
    buf: Vec<u8>,
    next: u64,
    bytes_in: u64,
    jobs: Option<SyncSender<Job>>,
    tokens: Receiver<()>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<(W, u64, String)>>>,
}

impl<W: Write + Send + 'static> ParGzWriter<W> {
    /// A compressor writing to `inner` with `threads` workers at `level` (0–12).
    pub fn new(inner: W, threads: usize, level: i32) -> Result<ParGzWriter<W>> {
        let lvl = libdeflater::CompressionLvl::new(level).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid compression level {level}: use 0 (store) to 12"),
            )
        })?;
        let threads = threads.max(1);
        let in_flight = 2 * threads + 2;
        let (job_tx, job_rx) = sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = sync_channel::<io::Result<Done>>(in_flight);
        // Tokens bound the chunks in flight: the producer takes one per chunk, the writer gives
        // it back once the chunk is on disk.
        let (token_tx, token_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            let _ = token_tx.send(());
        }
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            workers.push(std::thread::spawn(move || {
                let mut c = libdeflater::Compressor::new(lvl);
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((idx, data)) = job else { return };
                    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
                    let r = c
                        .gzip_compress(&data, &mut out)
                        .map(|n| {
                            out.truncate(n);
                            (idx, out)
                        })
                        .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")));
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(inner, done_rx, token_tx));
        Ok(ParGzWriter {
            buf: Vec::with_capacity(CHUNK_SIZE),
            next: 0,
            bytes_in: 0,
            jobs: Some(job_tx),
            tokens: token_rx,
            workers,
            writer: Some(writer),
        })
    }

    fn submit(&mut self, data: Vec<u8>) -> io::Result<()> {
        // Wait for a free slot; if the writer died (I/O error), its token sender is gone.
        self.tokens
            .recv()
            .map_err(|_| io::Error::other("gzip writer stopped"))?;
        let tx = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip writer finished"))?;
        tx.send((self.next, data))
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.next += 1;
        Ok(())
    }

    /// Compresses what is left, waits for every chunk to be written, and returns the inner
    /// writer with the summary.
    pub fn finish(mut self) -> io::Result<(W, GzSummary)> {
        if !self.buf.is_empty() || self.next == 0 {
            let last = std::mem::take(&mut self.buf);
            self.submit(last)?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        let (inner, bytes_out, sha512) = writer.join().map_err(|_| io::Error::other("gzip writer panicked"))??;
        Ok((
            inner,
            GzSummary {
                bytes_in: self.bytes_in,
                bytes_out,
                sha512,
            },
        ))
    }
}

impl<W: Write + Send + 'static> Write for ParGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.bytes_in += n as u64;
        if self.buf.len() == CHUNK_SIZE {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
            self.submit(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParGzWriter<W> {
    fn drop(&mut self) {
        // Abandoned without finish(): stop the workers; the writer thread ends when they do.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_in_order<W: Write>(
    mut inner: W,
    done: Receiver<io::Result<Done>>,
    tokens: SyncSender<()>,
) -> io::Result<(W, u64, String)> {
    let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut next = 0u64;
    let mut hasher = Sha512::new();
    let mut written = 0u64;
    for r in done {
        let (idx, data) = r?;
        pending.insert(idx, data);
        while let Some(data) = pending.remove(&next) {
            inner.write_all(&data)?;
            hasher.update(&data);
            written += data.len() as u64;
            next += 1;
            let _ = tokens.try_send(());
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("gzip chunks missing at the end of the stream"));
    }
    inner.flush()?;
    Ok((inner, written, hex(&hasher.finalize())))
}

/// Decompresses a (multi-member) gzip stream from `input` into `output`, refusing to produce more
/// than `cap` bytes (a gzip bomb). `source` names the asset in errors. Returns the bytes written.
pub fn gunzip_capped(input: impl Read, output: &mut impl Write, cap: u64, source: &str) -> Result<u64> {
    let mut decoder = flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(256 << 10, input));
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = decoder.read(&mut buf).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{source} is not valid gzip: {e}; the release asset is corrupt"),
            )
        })?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if total > cap {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{source} decompresses to more than {cap} bytes; refusing it as a possible gzip bomb \
                     (raise the limit only if this release is known to be that large)"
                ),
            ));
        }
        output
            .write_all(&buf[..n])
            .map_err(|e| Error::new(ErrorKind::Io, format!("writing the decompressed {source} failed: {e}")))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8], threads: usize) -> (Vec<u8>, GzSummary) {
        let mut w = ParGzWriter::new(Vec::new(), threads, DEFAULT_LEVEL).unwrap();
        // Write in odd-sized pieces to cross chunk boundaries.
        for piece in data.chunks(77_777) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 16) as u8
                } else {
                    b"flynn host layer "[i % 17]
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_and_reproducible_across_thread_counts() {
        let data = sample(3 * CHUNK_SIZE + 12_345);
        let (a, sa) = compress(&data, 1);
        let (b, sb) = compress(&data, 4);
        assert_eq!(a, b, "output must not depend on the thread count");
        assert_eq!(sa, sb);
        assert_eq!(sa.bytes_in, data.len() as u64);
        assert_eq!(sa.bytes_out, a.len() as u64);
        assert_eq!(sa.sha512, crate::model::checksums::sha512_hex(&a));
        let mut out = Vec::new();
        let n = gunzip_capped(&a[..], &mut out, u64::MAX, "x.gz").unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
        // Reproducible gzip header: mtime 0, no file name.
        assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn empty_input_is_a_valid_gzip_file() {
        let (a, s) = compress(b"", 2);
        assert_eq!(s.bytes_in, 0);
        let mut out = Vec::new();
        assert_eq!(gunzip_capped(&a[..], &mut out, 10, "e.gz").unwrap(), 0);
    }

    #[test]
    fn system_gzip_reads_it() {
        let data = sample(2 * CHUNK_SIZE + 1);
        let (a, _) = compress(&data, 2);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gz");
        std::fs::write(&p, &a).unwrap();
        let st = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&p)
            .status()
            .expect("gzip is installed");
        assert!(st.success());
        let out = std::process::Command::new("gzip").arg("-dc").arg(&p).output().unwrap();
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn decompression_cap_stops_a_bomb() {
        let zeros = vec![0u8; 8 * CHUNK_SIZE];
        let (bomb, s) = compress(&zeros, 2);
        assert!(s.bytes_out < 100_000, "{}", s.bytes_out);
        let mut sink = io::sink();
        let e = gunzip_capped(&bomb[..], &mut sink, CHUNK_SIZE as u64, "layers.tar.gz").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(
            e.message().contains("layers.tar.gz") && e.message().contains("gzip bomb"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_gzip_is_invalid_data() {
        let (mut a, _) = compress(&sample(100_000), 1);
        let mid = a.len() / 2;
        a[mid] ^= 0xff;
        let e = gunzip_capped(&a[..], &mut io::sink(), u64::MAX, "bad.gz").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.message().contains("bad.gz"));
        assert!(gunzip_capped(&b"not gzip"[..], &mut io::sink(), 100, "n.gz").is_err());
    }

    #[test]
    fn invalid_level_is_refused() {
        assert_eq!(
            ParGzWriter::new(Vec::new(), 1, 13).err().map(|e| e.kind()),
            Some(ErrorKind::InvalidArgument)
        );
    }
}
