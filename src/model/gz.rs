//! gzip in both directions: fast, parallel, reproducible compression for packaging, and capped,
//! parallel decompression for installing.
//!
//! Compression splits the input into fixed-size chunks and compresses each with libdeflate as an
//! independent gzip member (mtime 0, no name), on a pool of threads, writing the members in
//! order. A sequence of gzip members is a valid gzip file (RFC 1952 §2.2) that `gzip -d`, `tar z`,
//! Go's `compress/gzip` and flate2's `MultiGzDecoder` read as one stream. The output depends only
//! on the input, the level and the chunk size, never on the number of threads or timing, so it is
//! reproducible. Memory is bounded: at most `2 × threads + 2` chunks are in flight.
//!
//! Each member records its own size in its header, the way BGZF does: an extra field (FEXTRA,
//! RFC 1952 §2.3.1.1) with the subfield [`SIZE_SUBFIELD_ID`] (`FR`) holding the member's total
//! length in 4 bytes (docs/release-assets.md#gzip-members). Readers that do not know the subfield
//! skip it, as the RFC requires. [`ParGzReader`] uses it to cut the file into members without
//! inflating it, and inflates the members on a pool of threads (libdeflate, one call per member
//! into a buffer of the size the trailer's ISIZE gives, CRC32 and ISIZE checked), handing the
//! bytes on in order. From the first member without the record on, it reads the rest as one
//! stream (flate2's `MultiGzDecoder`), so any gzip file is still read.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::ptr::NonNull;
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

/// The gzip extra subfield (RFC 1952 §2.3.1.1) that records a member's size: SI1 `F`, SI2 `R`
/// (flynnrel), LEN 4, then the whole member's length in bytes (header, deflate data and trailer)
/// as an unsigned 32-bit little-endian number. BGZF's `BC` subfield does the same in 16 bits
/// (blocks of at most 64 KiB); members here hold [`CHUNK_SIZE`] bytes of input.
pub const SIZE_SUBFIELD_ID: [u8; 2] = *b"FR";
/// Bytes of data in the size subfield.
pub const SIZE_SUBFIELD_LEN: usize = 4;
/// Length of the header the packager writes: ID1 ID2 CM FLG=FEXTRA MTIME=0 XFL OS (10 bytes),
/// XLEN=8 (2 bytes), and the size subfield (4 + 4 bytes).
pub const SIZED_HEADER_LEN: usize = 10 + 2 + 4 + SIZE_SUBFIELD_LEN;
/// The largest sized member [`ParGzReader`] takes, both its recorded length and its ISIZE (the
/// packager's hold 1 MiB of input): a larger claim is refused before anything is allocated.
pub const MAX_MEMBER: u64 = 4 << 20;

/// Buffers of each kind [`ParGzReader`] keeps for reuse.
const MAX_SPARES: usize = 2;

const FEXTRA: u8 = 0x04;
const FRESERVED: u8 = 0xe0;

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
                let mut store = (level > 0).then(stored_compressor);
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((idx, data)) = job else { return };
                    // libdeflate writes its 10-byte header at SIZED_HEADER_LEN - 10, so that the
                    // sized header replaces it in place (no copy of the member).
                    let shift = SIZED_HEADER_LEN - 10;
                    let bound = c.gzip_compress_bound(data.len());
                    let bound = match store.as_mut() {
                        Some(st) => bound.max(st.gzip_compress_bound(data.len())),
                        None => bound,
                    };
                    let mut out = vec![0u8; shift + bound];
                    let r = c
                        .gzip_compress(&data, &mut out[shift..])
                        .and_then(|n| match store.as_mut() {
                            // Too little gained to be worth inflating: store the chunk instead.
                            Some(st) if !worth_compressing(data.len(), n) => st.gzip_compress(&data, &mut out[shift..]),
                            _ => Ok(n),
                        })
                        .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))
                        .and_then(|n| {
                            out.truncate(shift + n);
                            write_sized_header(&mut out)?;
                            Ok((idx, out))
                        });
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

/// A chunk's compressed member is kept only when it is at least [`STORE_BELOW`]-th smaller than
/// the chunk; otherwise the chunk is written in stored (uncompressed) deflate blocks, which a
/// reader copies instead of decoding. Squashfs layers are compressed already: deflate saves well
/// under 1% on them, yet inflating its Huffman-coded output costs as much CPU as inflating
/// code. The rule depends only on the chunk and the level, so the output stays reproducible.
pub const STORE_BELOW: usize = 64;

/// Whether a member of `member_len` bytes for a chunk of `chunk_len` bytes saves enough to be
/// kept (see [`STORE_BELOW`]).
fn worth_compressing(chunk_len: usize, member_len: usize) -> bool {
    member_len <= chunk_len - chunk_len / STORE_BELOW
}

/// libdeflate at level 0: deflate's stored blocks (supported since libdeflate 1.15).
fn stored_compressor() -> libdeflater::Compressor {
    libdeflater::Compressor::new(libdeflater::CompressionLvl::new(0).expect("level 0 is valid"))
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

/// Turns libdeflate's member (its 10-byte header at `SIZED_HEADER_LEN - 10`, then deflate data and
/// trailer) into a sized member by writing the sized header in front of the deflate data.
fn write_sized_header(member: &mut [u8]) -> io::Result<()> {
    let lib = SIZED_HEADER_LEN - 10;
    if member.len() < SIZED_HEADER_LEN + 8 || member[lib..lib + 8] != [0x1f, 0x8b, 8, 0, 0, 0, 0, 0] {
        return Err(io::Error::other("libdeflate wrote an unexpected gzip header"));
    }
    let (xfl, os) = (member[lib + 8], member[lib + 9]);
    let size = u32::try_from(member.len())
        .ok()
        .filter(|&n| u64::from(n) <= MAX_MEMBER)
        .ok_or_else(|| io::Error::other("gzip member larger than a sized member may be"))?;
    member[..10].copy_from_slice(&[0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, xfl, os]);
    member[10..12].copy_from_slice(&((4 + SIZE_SUBFIELD_LEN) as u16).to_le_bytes());
    member[12..14].copy_from_slice(&SIZE_SUBFIELD_ID);
    member[14..16].copy_from_slice(&(SIZE_SUBFIELD_LEN as u16).to_le_bytes());
    member[16..20].copy_from_slice(&size.to_le_bytes());
    Ok(())
}

/// What the start of a gzip member says about its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStart {
    /// The member records its total length (header, deflate data and trailer) in bytes.
    Sized(u64),
    /// The member has no size record (or none this reader trusts): read it as a stream.
    Unsized,
}

/// Reads the header of the next gzip member from `input` into `head` (appending every byte it
/// consumes) and says whether it records its size. `Ok(None)` at the end of the input (no byte
/// left). A header that is cut off, not gzip, has reserved flags set, or has a malformed extra
/// field, and a size record that is malformed, repeated, too small for the member's own header
/// and trailer or larger than [`MAX_MEMBER`], is an error describing the problem.
pub fn read_member_start(
    input: &mut impl Read,
    head: &mut Vec<u8>,
) -> std::result::Result<Option<MemberStart>, String> {
    let start = head.len();
    let got = read_up_to(input, head, 10).map_err(|e| format!("cannot be read: {e}"))?;
    if got == 0 {
        return Ok(None);
    }
    let fixed = &head[start..];
    if fixed.iter().zip([0x1f, 0x8b]).any(|(a, b)| *a != b) {
        return Err("does not start with the gzip magic bytes 1f 8b".into());
    }
    if got < 10 {
        return Err(format!("has a gzip header cut off after {got} bytes"));
    }
    if fixed[2] != 8 {
        return Err(format!(
            "uses compression method {} (gzip has only 8, deflate)",
            fixed[2]
        ));
    }
    let flg = fixed[3];
    if flg & FRESERVED != 0 {
        return Err(format!("has reserved header flags set ({flg:#04x})"));
    }
    if flg & FEXTRA == 0 {
        return Ok(Some(MemberStart::Unsized));
    }
    if read_up_to(input, head, 2).map_err(|e| format!("cannot be read: {e}"))? < 2 {
        return Err("has its extra field length (XLEN) cut off".into());
    }
    let xlen = u16::from_le_bytes([head[start + 10], head[start + 11]]) as usize;
    if read_up_to(input, head, xlen).map_err(|e| format!("cannot be read: {e}"))? < xlen {
        return Err(format!("has its {xlen}-byte extra field cut off"));
    }
    let extra = &head[start + 12..];
    let mut size = None;
    let mut pos = 0;
    while pos < extra.len() {
        if extra.len() - pos < 4 {
            return Err(format!(
                "has a malformed extra field: {} stray bytes after its last subfield",
                extra.len() - pos
            ));
        }
        let id = [extra[pos], extra[pos + 1]];
        let len = u16::from_le_bytes([extra[pos + 2], extra[pos + 3]]) as usize;
        let data = pos + 4;
        if data + len > extra.len() {
            return Err(format!(
                "has a malformed extra field: subfield {:?} of {len} bytes runs past its {xlen}-byte end",
                String::from_utf8_lossy(&id)
            ));
        }
        if id == SIZE_SUBFIELD_ID {
            if len != SIZE_SUBFIELD_LEN {
                return Err(format!(
                    "has a size subfield \"FR\" of {len} bytes (it has {SIZE_SUBFIELD_LEN})"
                ));
            }
            if size.is_some() {
                return Err("has two size subfields \"FR\"".into());
            }
            let b = &extra[data..data + 4];
            size = Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
        pos = data + len;
    }
    let Some(size) = size else {
        return Ok(Some(MemberStart::Unsized));
    };
    // Whatever else the header holds (a name, a comment, a header CRC) lies inside the recorded
    // length; libdeflate reads it. The length must at least cover what was read and a trailer.
    let min = (head.len() - start) as u64 + 8;
    if size < min {
        return Err(format!(
            "records a length of {size} bytes, less than its own header and trailer ({min} bytes)"
        ));
    }
    if size > MAX_MEMBER {
        return Err(format!(
            "records a length of {size} bytes, more than the {MAX_MEMBER} bytes a sized member may have"
        ));
    }
    Ok(Some(MemberStart::Sized(size)))
}

/// Appends up to `n` bytes of `input` to `buf`, fewer only at the end of the input; returns how
/// many.
fn read_up_to(input: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    let before = buf.len();
    input.take(n as u64).read_to_end(buf)?;
    Ok(buf.len() - before)
}

/// libdeflate's decompressor, for the one call libdeflater does not wrap
/// (`libdeflate_gzip_decompress_ex`, which says how many input bytes the member used).
struct Inflater(NonNull<libdeflate_sys::libdeflate_decompressor>);

// SAFETY: a libdeflate decompressor has no thread affinity; it is used by one thread at a time
// (it is owned, and every use takes `&mut self`).
unsafe impl Send for Inflater {}

impl Inflater {
    fn new() -> Inflater {
        // SAFETY: plain allocation; NULL (out of memory) is checked.
        let p = unsafe { libdeflate_sys::libdeflate_alloc_decompressor() };
        Inflater(NonNull::new(p).expect("libdeflate_alloc_decompressor: out of memory"))
    }

    /// Inflates the gzip member `member`, which must be exactly one member (no byte after its
    /// trailer) decompressing to exactly `isize` bytes, into `out` (a recycled buffer: its
    /// content is dropped and it grows to `isize` bytes if needed; never zeroed first, libdeflate
    /// writes it). libdeflate checks the header, the deflate data, the CRC32 and the ISIZE.
    fn member(&mut self, member: &[u8], isize: usize, mut out: Vec<u8>) -> std::result::Result<Vec<u8>, &'static str> {
        out.clear();
        out.reserve(isize);
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: the pointers and lengths come from a live slice and a live allocation of at
        // least `isize` bytes; libdeflate writes at most `isize` bytes to `out` and reads at most
        // `member.len()` bytes of `member`.
        let r = unsafe {
            libdeflate_sys::libdeflate_gzip_decompress_ex(
                self.0.as_ptr(),
                member.as_ptr().cast(),
                member.len(),
                out.as_mut_ptr().cast(),
                isize,
                &mut used_in,
                &mut used_out,
            )
        };
        match r {
            libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS if used_in != member.len() => {
                Err("ends before its recorded length (its size record is wrong)")
            }
            libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS if used_out != isize => {
                Err("decompresses to fewer bytes than its trailer's ISIZE")
            }
            libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS => {
                // SAFETY: libdeflate reported writing exactly `isize` bytes, within the capacity.
                unsafe { out.set_len(isize) };
                Ok(out)
            }
            libdeflate_sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => {
                Err("decompresses to more bytes than its trailer's ISIZE says")
            }
            _ => Err("has corrupt deflate data, or a CRC32 or ISIZE that does not match its content"),
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// A worker's answer: the inflated bytes and the member's buffer (for reuse), or what is wrong.
type MemberResult = std::result::Result<(Vec<u8>, Vec<u8>), &'static str>;
/// The stream decoder of the rest of a file from its first member without a size record.
type Tail<R> = flate2::read::MultiGzDecoder<io::BufReader<io::Chain<io::Cursor<Vec<u8>>, R>>>;
/// A member, its ISIZE, a buffer to inflate it into, and where to answer.
type MemberJob = (Vec<u8>, usize, Vec<u8>, SyncSender<MemberResult>);

/// A `Read` of the decompressed content of a (multi-member) gzip stream that inflates sized
/// members (see the module documentation) in parallel and the rest as a stream, in order.
///
/// Sized members are read whole (at most [`MAX_MEMBER`] bytes each); at most `threads + 1` of
/// them are in flight. A member whose trailer claims an ISIZE that would take the total past
/// `cap` is refused (`TooLarge`) before its buffer is allocated; a member that inflates to
/// anything but its ISIZE is refused too, so sized members never produce more than `cap` bytes.
/// The streamed rest is not capped here: callers count what they read. Errors are
/// `std::io::Error`s carrying a [`crate::error::Error`] (`InvalidData` or `TooLarge`, naming
/// `source` and the member's offset).
pub struct ParGzReader<R: Read> {
    input: Option<R>,
    source: String,
    cap: u64,
    claimed: u64,
    offset: u64,
    sized_members: u64,
    threads: usize,
    jobs: Option<SyncSender<MemberJob>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: VecDeque<(u64, Receiver<MemberResult>)>,
    out: Vec<u8>,
    pos: usize,
    /// Buffers of members and of inflated bytes that were handed on, for the next members: a
    /// fresh megabyte per member would cost a page fault per 4 KiB.
    spare_members: Vec<Vec<u8>>,
    spare_outs: Vec<Vec<u8>>,
    input_done: bool,
    tail_head: Option<Vec<u8>>,
    tail: Option<Tail<R>>,
}

impl<R: Read> ParGzReader<R> {
    /// A reader of `input` inflating on `threads` threads (at least 1), refusing sized members
    /// whose ISIZEs add up to more than `cap`; `source` names the asset in errors.
    pub fn new(input: R, threads: usize, cap: u64, source: &str) -> ParGzReader<R> {
        ParGzReader {
            input: Some(input),
            source: source.to_string(),
            cap,
            claimed: 0,
            offset: 0,
            sized_members: 0,
            threads: threads.max(1),
            jobs: None,
            workers: Vec::new(),
            in_flight: VecDeque::new(),
            out: Vec::new(),
            pos: 0,
            spare_members: Vec::new(),
            spare_outs: Vec::new(),
            input_done: false,
            tail_head: None,
            tail: None,
        }
    }

    /// How many members were inflated in parallel so far (0 for a file without size records).
    pub fn sized_members(&self) -> u64 {
        self.sized_members
    }

    /// Whether the reader has switched to streaming (a member without a size record).
    pub fn streaming(&self) -> bool {
        self.tail.is_some() || self.tail_head.is_some()
    }

    fn bad(&self, offset: u64, what: &str) -> io::Error {
        io::Error::other(Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} is not valid gzip: the member at byte {offset} {what}; the release asset is corrupt",
                self.source
            ),
        ))
    }

    fn start_workers(&mut self) {
        let (job_tx, job_rx) = sync_channel::<MemberJob>(self.threads + 1);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..self.threads {
            let job_rx = Arc::clone(&job_rx);
            self.workers.push(std::thread::spawn(move || {
                let mut inflater = Inflater::new();
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((member, isize, out, done)) = job else { return };
                    let r = inflater.member(&member, isize, out).map(|out| (out, member));
                    let _ = done.send(r);
                }
            }));
        }
        self.jobs = Some(job_tx);
    }

    /// Reads the next member's header and, when sized, the member, and hands it to a worker.
    fn dispatch(&mut self) -> io::Result<()> {
        let offset = self.offset;
        let Some(input) = self.input.as_mut() else {
            self.input_done = true;
            return Ok(());
        };
        let mut head = Vec::with_capacity(SIZED_HEADER_LEN);
        let start = read_member_start(input, &mut head).map_err(|what| self.bad(offset, &what))?;
        let len = match start {
            None if offset == 0 => {
                // An empty file: the stream decoder says what it thinks of it.
                self.tail_head = Some(head);
                return Ok(());
            }
            None => {
                self.input_done = true;
                return Ok(());
            }
            Some(MemberStart::Unsized) => {
                self.tail_head = Some(head);
                return Ok(());
            }
            Some(MemberStart::Sized(len)) => len as usize,
        };
        let mut member = self.spare_members.pop().unwrap_or_default();
        member.clear();
        member.extend_from_slice(&head);
        let have = member.len();
        member.resize(len, 0);
        let input = self.input.as_mut().expect("input is present");
        if let Err(e) = input.read_exact(&mut member[have..]) {
            let what = match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    format!("records a length of {len} bytes, past the end of the file")
                }
                _ => format!("cannot be read: {e}"),
            };
            return Err(self.bad(offset, &what));
        }
        let t = &member[len - 4..];
        let isize = u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
        if isize > MAX_MEMBER {
            return Err(self.bad(
                offset,
                &format!(
                    "claims to decompress to {isize} bytes (ISIZE), more than the {MAX_MEMBER} bytes a sized member may"
                ),
            ));
        }
        if self.claimed + isize > self.cap {
            return Err(io::Error::other(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} decompresses to more than {} bytes; refusing it as a possible gzip bomb \
                     (raise the limit only if this release is known to be that large)",
                    self.source, self.cap
                ),
            )));
        }
        self.claimed += isize;
        if self.jobs.is_none() {
            self.start_workers();
        }
        let (done_tx, done_rx) = sync_channel(1);
        self.jobs
            .as_ref()
            .expect("workers started")
            .send((
                member,
                isize as usize,
                self.spare_outs.pop().unwrap_or_default(),
                done_tx,
            ))
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.in_flight.push_back((offset, done_rx));
        self.offset += len as u64;
        self.sized_members += 1;
        Ok(())
    }
}

/// What [`ParGzReader::refill`] found.
enum Refill {
    /// `out[pos..]` holds inflated bytes.
    Ready,
    /// The rest of the file is read as one stream (the tail decoder).
    Streamed,
    /// Nothing is left.
    End,
}

impl<R: Read> ParGzReader<R> {
    /// Makes `out[pos..]` non-empty with the next inflated member, unless the rest is streamed
    /// or nothing is left.
    fn refill(&mut self) -> io::Result<Refill> {
        loop {
            if self.pos < self.out.len() {
                return Ok(Refill::Ready);
            }
            if self.tail.is_some() {
                return Ok(Refill::Streamed);
            }
            while !self.input_done && self.tail_head.is_none() && self.in_flight.len() < self.threads + 1 {
                self.dispatch()?;
            }
            if let Some((offset, rx)) = self.in_flight.pop_front() {
                match rx.recv() {
                    Ok(Ok((out, member))) => {
                        let done = std::mem::replace(&mut self.out, out);
                        self.pos = 0;
                        // Each finished member frees one buffer of each kind and the next one
                        // dispatched takes one: a spare or two is all the reuse needs.
                        if done.capacity() > 0 && self.spare_outs.len() < MAX_SPARES {
                            self.spare_outs.push(done);
                        }
                        if self.spare_members.len() < MAX_SPARES {
                            self.spare_members.push(member);
                        }
                    }
                    Ok(Err(what)) => return Err(self.bad(offset, what)),
                    Err(_) => return Err(io::Error::other("a gzip worker stopped")),
                }
                continue;
            }
            if let Some(head) = self.tail_head.take() {
                let input = self.input.take().expect("input is present until the tail starts");
                let rest = io::Cursor::new(head).chain(input);
                self.tail = Some(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(
                    256 << 10,
                    rest,
                )));
                continue;
            }
            return Ok(Refill::End);
        }
    }
}

impl<R: Read> Read for ParGzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.refill()? {
            Refill::Ready => {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
            Refill::Streamed => self.tail.as_mut().expect("streaming").read(buf),
            Refill::End => Ok(0),
        }
    }
}

/// The inflated members, handed out without a copy (what [`gunzip_capped`] writes from).
impl<R: Read> io::BufRead for ParGzReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self.refill()? {
            Refill::Ready => {}
            Refill::Streamed => {
                let tail = self.tail.as_mut().expect("streaming");
                self.out.clear();
                self.out.resize(256 << 10, 0);
                let n = tail.read(&mut self.out)?;
                self.out.truncate(n);
                self.pos = 0;
            }
            Refill::End => return Ok(&[]),
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.out.len());
    }
}

impl<R: Read> Drop for ParGzReader<R> {
    fn drop(&mut self) {
        self.jobs = None;
        self.in_flight.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The crate error an I/O error from [`ParGzReader`] carries, if any.
pub fn inner_error(e: &io::Error) -> Option<Error> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<Error>())
        .map(|i| Error::new(i.kind(), i.message().to_string()))
}

/// Decompresses a (multi-member) gzip stream from `input` into `output`, refusing to produce more
/// than `cap` bytes (a gzip bomb). `source` names the asset in errors. Returns the bytes written.
/// Sized members (see the module documentation) are inflated on [`default_threads`] threads.
pub fn gunzip_capped(input: impl Read, output: &mut impl Write, cap: u64, source: &str) -> Result<u64> {
    use std::io::BufRead;
    let mut decoder = ParGzReader::new(input, default_threads(), cap, source);
    let mut total = 0u64;
    loop {
        let buf = decoder.fill_buf().map_err(|e| {
            inner_error(&e).unwrap_or_else(|| {
                Error::new(
                    ErrorKind::InvalidData,
                    format!("{source} is not valid gzip: {e}; the release asset is corrupt"),
                )
            })
        })?;
        let n = buf.len();
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
            .write_all(buf)
            .map_err(|e| Error::new(ErrorKind::Io, format!("writing the decompressed {source} failed: {e}")))?;
        decoder.consume(n);
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
        // Reproducible gzip header: mtime 0, no file name, only the size record (FEXTRA).
        assert_eq!(&a[..4], &[0x1f, 0x8b, 8, FEXTRA]);
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    /// The deflate block type (0 = stored) of the first block of every member of `gz`.
    fn first_block_types(gz: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut at = 0;
        while at < gz.len() {
            let len = gz_member_len(gz, at);
            types.push((gz[at + SIZED_HEADER_LEN] >> 1) & 3);
            at += len;
        }
        types
    }

    #[test]
    fn chunks_deflate_barely_shrinks_are_stored() {
        // Compressible text; noise (deflate gains nothing); noise whose first 1/32 is zeros
        // (deflate gains about 3%, more than the 1/64 the rule asks for).
        let mut third = noise(CHUNK_SIZE, 2);
        third[..CHUNK_SIZE / 32].fill(0);
        let data = [sample(CHUNK_SIZE), noise(CHUNK_SIZE, 1), third].concat();
        let (gz, s) = compress(&data, 2);
        assert_eq!(first_block_types(&gz), [2, 0, 2], "only the noise chunk is stored");
        // A stored member is the chunk plus framing: a few bytes per 64 KiB block.
        let second = gz_member_len(&gz, gz_member_len(&gz, 0));
        assert!(
            (CHUNK_SIZE..CHUNK_SIZE + 200).contains(&second),
            "stored member of {second} bytes"
        );
        assert_eq!(s.bytes_out, gz.len() as u64);
        // Another reader (flate2's) reads the mix as one stream, and so does ours.
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut ours = Vec::new();
        gunzip_capped(&gz[..], &mut ours, u64::MAX, "mix.gz").unwrap();
        assert_eq!(ours, data);
        // Level 0 stores everything; the rule never applies twice.
        let mut w = ParGzWriter::new(Vec::new(), 1, 0).unwrap();
        w.write_all(&data).unwrap();
        let (stored, _) = w.finish().unwrap();
        assert_eq!(first_block_types(&stored), [0, 0, 0]);
    }

    fn gz_member_len(gz: &[u8], at: usize) -> usize {
        u32::from_le_bytes(gz[at + 16..at + 20].try_into().unwrap()) as usize
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
