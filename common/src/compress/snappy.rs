//! Snappy's framing format, the stream go-nsq, pynsq and nsqd speak after
//! IDENTIFY negotiates `snappy`. Pure functions over buffers, so a connection
//! can decode whatever has arrived and keep the rest for later.
//!
//! Writing uses `snap`'s frame encoder as is. Reading parses the chunks here
//! because `snap`'s reader needs a blocking source; the blocks themselves are
//! decompressed by `snap`. Checksums are not verified, as nsqd does not.

use bytes::{Buf, BytesMut};
use std::io::{self, Write};

const STREAM_IDENTIFIER: &[u8] = b"sNaPpY";
const MAX_BLOCK: usize = 1 << 16;
/// The largest compressed chunk body: snappy's bound for a 64 KiB block plus the checksum.
const MAX_CHUNK_BODY: usize = 4 + 32 + MAX_BLOCK + MAX_BLOCK / 6;

/// Compresses everything written between flushes into one run of chunks.
pub struct SnappyEncoder {
    frames: snap::write::FrameEncoder<Vec<u8>>,
}

impl Default for SnappyEncoder {
    fn default() -> Self {
        SnappyEncoder {
            frames: snap::write::FrameEncoder::new(Vec::new()),
        }
    }
}

impl SnappyEncoder {
    /// Compresses `data`; the chunks are in the returned buffer, which the
    /// caller empties once written.
    pub fn encode(&mut self, data: &[u8]) -> io::Result<&mut Vec<u8>> {
        self.frames.write_all(data)?;
        self.frames.flush()?;
        Ok(self.frames.get_mut())
    }
}

/// Decodes chunks as they arrive.
#[derive(Default)]
pub struct SnappyDecoder {
    raw: snap::raw::Decoder,
    /// Bytes of a skippable chunk still to discard.
    skipping: usize,
}

impl SnappyDecoder {
    /// Moves every complete chunk at the front of `input` into `out` (decompressed),
    /// leaving a partial chunk in `input`. Returns the bytes added to `out`.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> io::Result<usize> {
        let start = out.len();
        loop {
            if self.skipping > 0 {
                let n = self.skipping.min(input.len());
                input.advance(n);
                self.skipping -= n;
                if self.skipping > 0 {
                    break;
                }
            }
            if input.len() < 4 {
                break;
            }
            let kind = input[0];
            let len = u32::from_le_bytes([input[1], input[2], input[3], 0]) as usize;
            match kind {
                // Padding and reserved skippable chunks.
                0x80..=0xfe => {
                    input.advance(4);
                    self.skipping = len;
                    continue;
                }
                0xff if len != STREAM_IDENTIFIER.len() => {
                    return Err(corrupt("bad stream identifier length"))
                }
                0x00 | 0x01 if !(4..=MAX_CHUNK_BODY).contains(&len) => {
                    return Err(corrupt(&format!("chunk length {len} out of range")))
                }
                0x00 | 0x01 | 0xff => {}
                _ => return Err(corrupt(&format!("reserved chunk type {kind:#04x}"))),
            }
            if input.len() < 4 + len {
                break;
            }
            let body = &input[4..4 + len];
            match kind {
                0xff if body != STREAM_IDENTIFIER => {
                    return Err(corrupt("bad stream identifier"));
                }
                0x00 => {
                    let block = &body[4..];
                    let n = snap::raw::decompress_len(block).map_err(invalid)?;
                    if n > MAX_BLOCK {
                        return Err(corrupt("block larger than 64 KiB"));
                    }
                    let at = out.len();
                    out.resize(at + n, 0);
                    let wrote = self
                        .raw
                        .decompress(block, &mut out[at..])
                        .map_err(invalid)?;
                    out.truncate(at + wrote);
                }
                0x01 => {
                    if len - 4 > MAX_BLOCK {
                        return Err(corrupt("block larger than 64 KiB"));
                    }
                    out.extend_from_slice(&body[4..]);
                }
                _ => {}
            }
            input.advance(4 + len);
        }
        Ok(out.len() - start)
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snappy: {what}"))
}

fn invalid(e: snap::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snappy: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_in_pieces(data: &[u8], piece: usize) -> Vec<u8> {
        let mut enc = SnappyEncoder::default();
        let wire = enc.encode(data).unwrap().clone();
        let mut dec = SnappyDecoder::default();
        let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
        for chunk in wire.chunks(piece) {
            input.extend_from_slice(chunk);
            dec.decode(&mut input, &mut out).unwrap();
        }
        assert!(input.is_empty(), "every chunk consumed");
        out.to_vec()
    }

    #[test]
    fn decodes_what_snap_encodes_whatever_the_read_sizes() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for piece in [1, 3, 4096, 70_000, usize::MAX] {
            assert_eq!(roundtrip_in_pieces(&text, piece), text, "piece {piece}");
        }
    }

    #[test]
    fn stream_starts_with_the_identifier_and_reuses_its_buffers() {
        let mut enc = SnappyEncoder::default();
        let first = enc.encode(b"hello").unwrap();
        assert_eq!(&first[..10], b"\xff\x06\x00\x00sNaPpY");
        first.clear();
        let second = enc.encode(b"hello").unwrap();
        assert_ne!(second[0], 0xff, "identifier only once");
    }

    #[test]
    fn uncompressed_padding_and_skippable_chunks_are_read() {
        let mut input = BytesMut::new();
        input.extend_from_slice(b"\xff\x06\x00\x00sNaPpY");
        input.extend_from_slice(b"\xfe\x03\x00\x00abc"); // padding
        input.extend_from_slice(b"\x01\x07\x00\x00\x00\x00\x00\x00OK!"); // uncompressed
        input.extend_from_slice(b"\x80\x02\x00\x00zz"); // skippable
        let mut out = BytesMut::new();
        let n = SnappyDecoder::default()
            .decode(&mut input, &mut out)
            .unwrap();
        assert_eq!((n, &out[..]), (3, &b"OK!"[..]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"\x02\x01\x00\x00x"[..],     // reserved unskippable
            &b"\xff\x05\x00\x00sNaPp"[..], // short identifier
            &b"\x00\x02\x00\x00xx"[..],    // no room for the checksum
            &b"\x00\x08\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"[..], // bad block
            &b"\x01\xff\xff\xff"[..],      // too long
        ] {
            let mut input = BytesMut::from(bad);
            let err = SnappyDecoder::default()
                .decode(&mut input, &mut BytesMut::new())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
