//! Low-level byte helpers: a bounds-checked reader, LEB128 varints, the
//! common item prefix, CRC-32 and deflate with bounded output.

use super::error::{Part, SparseError};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// First four bytes of every sparse item.
pub(crate) const MAGIC: &[u8; 4] = b"RCSP";
/// The encoding version written by this build, and the only one it reads.
pub(crate) const VERSION: u8 = 1;
/// Length of the common prefix: magic (4), version (1), kind (1), flags (2).
pub(crate) const PREFIX_LEN: usize = 8;
/// Length of the trailing CRC-32.
pub(crate) const CRC_LEN: usize = 4;
/// Deflate level: 1, miniz's fast greedy path. Against level 6 (zlib's
/// default) on the shared days it encodes forecast frames in 34–45 % of the
/// time for 3–6 % more bytes, and scans in 31–64 % of the time for −6 % to
/// +24 % bytes; decoding is as fast (docs/PERFORMANCE.md, "Sparse rain
/// array sizes"). Any level decodes the same way.
const DEFLATE_LEVEL: u32 = 1;

/// Appends the common prefix for an item of `kind` (b'H', b'T', b'B').
pub(crate) fn put_prefix(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// Appends an unsigned LEB128 varint (1 to 5 bytes).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the CRC-32 (IEEE) of everything in `out` so far.
pub(crate) fn seal(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks the trailing CRC-32 of a whole item and returns the bytes before it.
///
/// Builds made by cargo-fuzz (`--cfg fuzzing`) skip the comparison so that the
/// fuzzer can reach the parsers behind it; every parser still checks every
/// length and value on its own.
pub(crate) fn unseal(part: Part, bytes: &[u8]) -> Result<&[u8], SparseError> {
    if bytes.len() < PREFIX_LEN + CRC_LEN {
        return Err(SparseError::Truncated {
            part,
            what: "prefix and checksum",
            needed: PREFIX_LEN + CRC_LEN,
            available: bytes.len(),
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - CRC_LEN);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed && !cfg!(fuzzing) {
        return Err(SparseError::Checksum {
            part,
            stored,
            computed,
        });
    }
    Ok(body)
}

/// Checks the common prefix for `kind` (magic, version, flags = 0).
pub(crate) fn check_prefix(r: &mut Reader<'_>, kind: u8) -> Result<(), SparseError> {
    let part = r.part;
    let head = r.take(PREFIX_LEN, "prefix")?;
    let mut expected = MAGIC.to_vec();
    expected.push(kind);
    if &head[..4] != MAGIC || head[5] != kind {
        return Err(SparseError::BadMagic {
            part,
            expected: printable(&expected),
            found: printable(&[&head[..4], &head[5..6]].concat()),
        });
    }
    if head[4] != VERSION {
        return Err(SparseError::UnsupportedVersion {
            part,
            found: head[4],
            supported: VERSION,
        });
    }
    let flags = u16::from_le_bytes([head[6], head[7]]);
    if flags != 0 {
        return Err(SparseError::BadValue {
            part,
            field: "flags",
            value: flags.to_string(),
            reason: "no flags are defined in version 1",
        });
    }
    Ok(())
}

/// Bytes as ASCII where printable, `\xNN` otherwise.
fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

/// A bounds-checked little-endian reader over a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    pub(crate) part: Part,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(part: Part, buf: &'a [u8]) -> Self {
        Self { buf, pos: 0, part }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SparseError> {
        if n > self.remaining() {
            return Err(SparseError::Truncated {
                part: self.part,
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SparseError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, SparseError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, SparseError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, SparseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, SparseError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, SparseError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f32(&mut self, what: &'static str) -> Result<f32, SparseError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f64(&mut self, what: &'static str) -> Result<f64, SparseError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// Reads an unsigned LEB128 varint of at most 5 bytes that fits a `u32`.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, SparseError> {
        let part = self.part;
        decode_varint(|| self.u8(what), part, what)
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(&self) -> Result<(), SparseError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(SparseError::TrailingBytes {
                part: self.part,
                bytes: n,
            }),
        }
    }
}

/// Decodes a LEB128 varint from a byte source; rejects overlong or
/// overflowing encodings.
pub(crate) fn decode_varint(
    mut next: impl FnMut() -> Result<u8, SparseError>,
    part: Part,
    what: &'static str,
) -> Result<u32, SparseError> {
    let mut v: u32 = 0;
    for i in 0..5 {
        let b = next()?;
        let bits = (b & 0x7f) as u32;
        if i == 4 && (b & 0x80 != 0 || bits > 0x0f) {
            return Err(SparseError::BadValue {
                part,
                field: what,
                value: format!("byte {b:#04x} at position 4"),
                reason: "varint longer than 32 bits",
            });
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    // Unreachable: the loop returns or fails by its fifth byte.
    Err(SparseError::BadValue {
        part,
        field: what,
        value: "5+ bytes".into(),
        reason: "varint longer than 32 bits",
    })
}

/// A reusable raw-deflate compressor. miniz's compressor state is a few
/// hundred kilobytes: one per scan instead of one per tile saves most of the
/// encoding time of small tiles.
pub(crate) struct Deflater(Compress);

impl Deflater {
    pub(crate) fn new() -> Self {
        Self(Compress::new(Compression::new(DEFLATE_LEVEL), false))
    }

    /// Deflates `raw` (raw deflate, no zlib header). Should the compressor
    /// ever report an error (it does not for in-memory data), the result is a
    /// valid stream of stored blocks instead.
    pub(crate) fn deflate(&mut self, raw: &[u8]) -> Vec<u8> {
        self.0.reset();
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        loop {
            let consumed = (self.0.total_in() as usize).min(raw.len());
            match self
                .0
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Finish)
            {
                Ok(Status::StreamEnd) => return out,
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(_) => return stored_deflate(raw),
            }
        }
    }
}

/// A raw-deflate stream of stored blocks (no compression) holding `raw`.
fn stored_deflate(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 65_535 * 5 + 5);
    let mut chunks = raw.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A reusable raw-deflate decompressor (its state holds a 32 KiB window).
pub(crate) struct Inflater(Decompress);

impl Inflater {
    pub(crate) fn new() -> Self {
        Self(Decompress::new(false))
    }

    /// Inflates `compressed`, which must produce exactly `expected_len`
    /// bytes. Never allocates more than `expected_len + 1` bytes, whatever the
    /// stream says.
    pub(crate) fn inflate_exact(
        &mut self,
        part: Part,
        compressed: &[u8],
        expected_len: usize,
    ) -> Result<Vec<u8>, SparseError> {
        self.0.reset(false);
        let mut out = Vec::with_capacity(expected_len + 1);
        loop {
            let (in_before, out_before) = (self.0.total_in(), self.0.total_out());
            let input = &compressed[(in_before as usize).min(compressed.len())..];
            let status = self
                .0
                .decompress_vec(input, &mut out, FlushDecompress::Finish)
                .map_err(|e| SparseError::Deflate {
                    part,
                    reason: e.to_string(),
                })?;
            if status == Status::StreamEnd {
                break;
            }
            if out.len() > expected_len {
                return Err(SparseError::Deflate {
                    part,
                    reason: format!("inflates to more than the {expected_len} bytes declared"),
                });
            }
            if self.0.total_in() == in_before && self.0.total_out() == out_before {
                return Err(SparseError::Deflate {
                    part,
                    reason: "stream ends before its last block".into(),
                });
            }
        }
        if out.len() != expected_len {
            return Err(SparseError::Deflate {
                part,
                reason: format!("inflates to {} bytes, {expected_len} declared", out.len()),
            });
        }
        if (self.0.total_in() as usize) < compressed.len() {
            return Err(SparseError::TrailingBytes {
                part,
                bytes: compressed.len() - self.0.total_in() as usize,
            });
        }
        Ok(out)
    }
}

/// Streams the bytes of a deflate stream one at a time, in 8 KiB chunks,
/// without holding the whole inflated stream in memory.
pub(crate) struct InflateStream<'a> {
    dec: Decompress,
    input: &'a [u8],
    buf: Box<[u8; 8192]>,
    pos: usize,
    len: usize,
    done: bool,
    part: Part,
    /// FNV-1a 64 of every byte returned so far.
    hash: u64,
}

impl<'a> InflateStream<'a> {
    pub(crate) fn new(part: Part, compressed: &'a [u8]) -> Self {
        Self::seeded(part, compressed, FNV_OFFSET)
    }

    /// Like [`Self::new`], with the running hash starting from `seed` (the
    /// FNV-1a state after hashing some prefix).
    pub(crate) fn seeded(part: Part, compressed: &'a [u8], seed: u64) -> Self {
        Self {
            dec: Decompress::new(false),
            input: compressed,
            buf: Box::new([0u8; 8192]),
            pos: 0,
            len: 0,
            done: false,
            part,
            hash: seed,
        }
    }

    /// FNV-1a 64 of every inflated byte returned so far.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// Refills the buffer; `false` at the end of the stream.
    fn refill(&mut self) -> Result<bool, SparseError> {
        let err = |reason: String| SparseError::Deflate {
            part: self.part,
            reason,
        };
        while !self.done {
            let (in_before, out_before) = (self.dec.total_in(), self.dec.total_out());
            let input = &self.input[(in_before as usize).min(self.input.len())..];
            let status = self
                .dec
                .decompress(input, &mut self.buf[..], FlushDecompress::None)
                .map_err(|e| err(e.to_string()))?;
            let produced = (self.dec.total_out() - out_before) as usize;
            if status == Status::StreamEnd {
                self.done = true;
                let consumed = self.dec.total_in() as usize;
                if consumed < self.input.len() {
                    return Err(SparseError::TrailingBytes {
                        part: self.part,
                        bytes: self.input.len() - consumed,
                    });
                }
            } else if produced == 0 && self.dec.total_in() == in_before {
                return Err(err("stream ends before its last block".into()));
            }
            if produced > 0 {
                self.pos = 0;
                self.len = produced;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next byte, or `None` at the end of the stream.
    pub(crate) fn next_byte(&mut self) -> Result<Option<u8>, SparseError> {
        if self.pos == self.len && !self.refill()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        self.hash = fnv1a64_step(self.hash, b);
        Ok(Some(b))
    }

    /// The next varint; the end of the stream is an error.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, SparseError> {
        let part = self.part;
        decode_varint(
            || {
                self.next_byte()?.ok_or(SparseError::Truncated {
                    part,
                    what,
                    needed: 1,
                    available: 0,
                })
            },
            part,
            what,
        )
    }
}

/// 64-bit FNV-1a: a small, stable, dependency-free hash for fingerprints.
pub(crate) fn fnv1a64(chunks: &[&[u8]]) -> u64 {
    chunks
        .iter()
        .flat_map(|c| c.iter())
        .fold(FNV_OFFSET, |h, &b| fnv1a64_step(h, b))
}

/// FNV-1a 64 offset basis.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a 64 step.
#[inline]
pub(crate) fn fnv1a64_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut r = Reader::new(Part::Tile, &b);
            assert_eq!(r.varint("v").unwrap(), v);
            r.finish().unwrap();
        }
        let mut r = Reader::new(Part::Tile, &[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert_eq!(r.varint("v").unwrap_err().code(), "bad_value");
        let mut r = Reader::new(Part::Tile, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_eq!(r.varint("v").unwrap_err().code(), "bad_value");
        let mut r = Reader::new(Part::Tile, &[0x80, 0x80]);
        assert_eq!(r.varint("v").unwrap_err().code(), "truncated");
    }

    #[test]
    fn inflate_is_bounded_by_the_declared_length() {
        let raw = vec![7u8; 100_000];
        let mut d = Deflater::new();
        let z = d.deflate(&raw);
        assert!(z.len() < 1000);
        // The deflater is reusable.
        assert_eq!(d.deflate(&raw), z);
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate_exact(Part::Tile, &z, raw.len()).unwrap(), raw);
        assert_eq!(inf.inflate_exact(Part::Tile, &z, raw.len()).unwrap(), raw);
        let e = inf.inflate_exact(Part::Tile, &z, 10).unwrap_err();
        assert!(e.to_string().contains("more than the 10 bytes"), "{e}");
        let e = inf.inflate_exact(Part::Tile, &z, 200_000).unwrap_err();
        assert_eq!(e.code(), "deflate");
        for cut in 0..z.len() {
            assert!(inf.inflate_exact(Part::Tile, &z[..cut], raw.len()).is_err());
        }
        let mut long = z.clone();
        long.push(0);
        let e = inf.inflate_exact(Part::Tile, &long, raw.len()).unwrap_err();
        assert_eq!(e.code(), "trailing_bytes");
        assert_eq!(
            inf.inflate_exact(Part::Tile, &[0xff, 0xff], 10)
                .unwrap_err()
                .code(),
            "deflate"
        );
    }

    #[test]
    fn inflate_stream_reads_across_chunks() {
        let raw: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let z = Deflater::new().deflate(&raw);
        let mut s = InflateStream::new(Part::Mask, &z);
        let mut back = Vec::new();
        while let Some(b) = s.next_byte().unwrap() {
            back.push(b);
        }
        assert_eq!(back, raw);
        for cut in 0..z.len() {
            let mut s = InflateStream::new(Part::Mask, &z[..cut]);
            let mut n = 0;
            let end = loop {
                match s.next_byte() {
                    Ok(Some(_)) => n += 1,
                    other => break other,
                }
            };
            assert!(end.is_err(), "cut at {cut}: {n} bytes, {end:?}");
        }
    }

    #[test]
    fn seal_and_unseal() {
        let mut b = Vec::new();
        put_prefix(&mut b, b'H');
        b.extend_from_slice(b"payload");
        seal(&mut b);
        assert_eq!(unseal(Part::Header, &b).unwrap().len(), b.len() - 4);
        let mut bad = b.clone();
        bad[9] ^= 1;
        assert_eq!(unseal(Part::Header, &bad).unwrap_err().code(), "checksum");
        assert_eq!(
            unseal(Part::Header, &b[..5]).unwrap_err().code(),
            "truncated"
        );
    }

    #[test]
    fn fnv_is_stable() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foo"]), 0xdcb2_7518_fed9_d577);
        assert_eq!(fnv1a64(&[b"fo", b"o"]), fnv1a64(&[b"foo"]));
    }

    #[test]
    fn stored_deflate_streams_inflate() {
        for len in [0usize, 1, 100, 65_535, 65_536, 200_000] {
            let raw: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let z = stored_deflate(&raw);
            let mut s = InflateStream::new(Part::Mask, &z);
            let mut back = Vec::new();
            while let Some(b) = s.next_byte().unwrap() {
                back.push(b);
            }
            assert_eq!(back, raw, "{len}");
        }
    }
}
