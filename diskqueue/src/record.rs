//! The record format of a data file: a 4-byte big-endian `i32` length, then
//! that many bytes. Records follow each other with no padding, header or footer.
//!
//! Everything here is a pure function over bytes, so the framing can be
//! unit-tested and fuzzed without touching files.

/// Bytes taken by a record's length prefix.
pub const HEADER_LEN: usize = 4;

/// Inclusive bounds on a record's payload length (go-diskqueue's
/// `minMsgSize` / `maxMsgSize`). They are checked on write and on read: a length
/// outside them on read means the file is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    pub min: i32,
    pub max: i32,
}

impl SizeLimits {
    pub fn new(min: i32, max: i32) -> Self {
        SizeLimits { min, max }
    }

    /// Whether a payload of `len` bytes may be stored.
    pub fn accepts(&self, len: i64) -> bool {
        len >= i64::from(self.min) && len <= i64::from(self.max)
    }
}

/// Why bytes could not be taken as records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The length prefix (or, when encoding, the payload length) is outside the limits.
    #[error("invalid message read size ({size})")]
    InvalidSize { size: i64 },
    /// The bytes stop before the record does.
    #[error("truncated record: needs {needed} bytes, only {available} present")]
    Truncated { needed: usize, available: usize },
}

/// Result of looking at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record: its payload, and how many bytes it took (header included).
    Record { data: &'a [u8], len: usize },
    /// Not enough bytes yet; `needed` is the total the record (or its header) takes.
    Incomplete { needed: usize },
}

/// The length prefix for a payload of `len` bytes.
pub fn encode_header(len: i32) -> [u8; HEADER_LEN] {
    len.to_be_bytes()
}

/// The payload length a header announces (may be negative or absurd: check it).
pub fn decode_header(header: [u8; HEADER_LEN]) -> i32 {
    i32::from_be_bytes(header)
}

/// Appends `data` as one record to `out`.
pub fn encode_record(
    data: &[u8],
    limits: SizeLimits,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let size = data.len() as i64;
    if !limits.accepts(size) {
        return Err(RecordError::InvalidSize { size });
    }
    // `accepts` bounded the size by an i32, so the cast is exact.
    out.extend_from_slice(&encode_header(size as i32));
    out.extend_from_slice(data);
    Ok(())
}

/// Looks at the record starting at `buf[0]`.
///
/// A bad length is reported as soon as the header is present, without waiting
/// for (or allocating) the payload it claims.
pub fn decode_record(buf: &[u8], limits: SizeLimits) -> Result<Decoded<'_>, RecordError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::Incomplete { needed: HEADER_LEN });
    };
    let size = decode_header(*header);
    if !limits.accepts(i64::from(size)) {
        return Err(RecordError::InvalidSize {
            size: i64::from(size),
        });
    }
    // Non-negative: `accepts` rejected negatives unless min is negative, which
    // `SizeLimits` users must not configure; guard anyway.
    let Ok(size) = usize::try_from(size) else {
        return Err(RecordError::InvalidSize {
            size: i64::from(size),
        });
    };
    let len = HEADER_LEN + size;
    match buf.get(HEADER_LEN..len) {
        Some(data) => Ok(Decoded::Record { data, len }),
        None => Ok(Decoded::Incomplete { needed: len }),
    }
}

/// Iterates over the records of a complete buffer (for example a whole data
/// file). A bad length or a truncated tail is yielded once as an error and ends
/// the iteration, as a reader cannot know where the next record would start.
pub fn split_records(buf: &[u8], limits: SizeLimits) -> Records<'_> {
    Records {
        buf,
        limits,
        consumed: 0,
        done: false,
    }
}

/// Iterator returned by [`split_records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    buf: &'a [u8],
    limits: SizeLimits,
    consumed: usize,
    done: bool,
}

impl Records<'_> {
    /// Bytes taken by the records yielded so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.consumed..];
        if self.done || rest.is_empty() {
            return None;
        }
        match decode_record(rest, self.limits) {
            Ok(Decoded::Record { data, len }) => {
                self.consumed += len;
                Some(Ok(data))
            }
            Ok(Decoded::Incomplete { needed }) => {
                self.done = true;
                Some(Err(RecordError::Truncated {
                    needed,
                    available: rest.len(),
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SizeLimits = SizeLimits { min: 0, max: 100 };

    #[test]
    fn encoded_record_is_big_endian_length_then_payload() {
        let mut out = Vec::new();
        encode_record(b"hello", LIMITS, &mut out).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x05hello");
    }

    #[test]
    fn encode_rejects_sizes_outside_limits() {
        let mut out = Vec::new();
        let limits = SizeLimits::new(2, 4);
        assert_eq!(
            encode_record(b"x", limits, &mut out),
            Err(RecordError::InvalidSize { size: 1 })
        );
        assert_eq!(
            encode_record(b"xxxxx", limits, &mut out),
            Err(RecordError::InvalidSize { size: 5 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn decode_waits_for_header_and_payload() {
        assert_eq!(
            decode_record(b"\x00\x00", LIMITS),
            Ok(Decoded::Incomplete { needed: 4 })
        );
        assert_eq!(
            decode_record(b"\x00\x00\x00\x03ab", LIMITS),
            Ok(Decoded::Incomplete { needed: 7 })
        );
        assert_eq!(
            decode_record(b"\x00\x00\x00\x03abcdef", LIMITS),
            Ok(Decoded::Record {
                data: b"abc",
                len: 7
            })
        );
    }

    #[test]
    fn huge_or_negative_lengths_are_errors_before_any_payload() {
        assert_eq!(
            decode_record(b"\x7f\xff\xff\xff", LIMITS),
            Err(RecordError::InvalidSize {
                size: i64::from(i32::MAX)
            })
        );
        assert_eq!(
            decode_record(b"\xff\xff\xff\xfe", LIMITS),
            Err(RecordError::InvalidSize { size: -2 })
        );
    }

    #[test]
    fn split_yields_records_then_reports_truncated_tail() {
        let mut buf = Vec::new();
        encode_record(b"one", LIMITS, &mut buf).unwrap();
        encode_record(b"", LIMITS, &mut buf).unwrap();
        encode_record(b"three", LIMITS, &mut buf).unwrap();
        buf.truncate(buf.len() - 2);
        let mut it = split_records(&buf, LIMITS);
        assert_eq!(it.next(), Some(Ok(&b"one"[..])));
        assert_eq!(it.next(), Some(Ok(&b""[..])));
        assert_eq!(
            it.next(),
            Some(Err(RecordError::Truncated {
                needed: 9,
                available: 7
            }))
        );
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), 11);
    }

    #[test]
    fn split_stops_at_garbage_length() {
        let mut buf = Vec::new();
        encode_record(b"ok", LIMITS, &mut buf).unwrap();
        buf.extend_from_slice(b"\x00\x01\x00\x00garbage");
        let got: Vec<_> = split_records(&buf, LIMITS).collect();
        assert_eq!(
            got,
            vec![
                Ok(&b"ok"[..]),
                Err(RecordError::InvalidSize { size: 65536 })
            ]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of a pseudo-random stream.
        let mut x: u32 = 0x1234_5678;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & 0x0f) as u8
            })
            .collect();
        for start in 0..64 {
            for d in split_records(&bytes[start..], LIMITS).flatten() {
                assert!(d.len() <= 100);
            }
        }
    }
}
