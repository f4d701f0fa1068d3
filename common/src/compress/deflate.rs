//! Raw deflate (RFC 1951, no zlib header), the stream IDENTIFY's `deflate`
//! negotiates. Each flush ends with a sync flush, as Go's `flate.Writer.Flush`
//! does, so the client can decode everything sent so far. Buffers are kept
//! for the connection's life.

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;

pub struct DeflateEncoder {
    state: Compress,
    out: Vec<u8>,
}

impl DeflateEncoder {
    /// `level` in 1..=9.
    pub fn new(level: u32) -> Self {
        DeflateEncoder {
            state: Compress::new(Compression::new(level.clamp(1, 9)), false),
            out: Vec::new(),
        }
    }

    /// Compresses `data` and sync-flushes; the bytes are in the returned
    /// buffer, which the caller empties once written.
    pub fn encode(&mut self, mut data: &[u8]) -> io::Result<&mut Vec<u8>> {
        while !data.is_empty() {
            self.out.reserve(data.len() / 2 + 64);
            let before = self.state.total_in();
            self.state
                .compress_vec(data, &mut self.out, FlushCompress::None)
                .map_err(io::Error::other)?;
            data = &data[(self.state.total_in() - before) as usize..];
        }
        // Done once a sync flush leaves output room unused.
        loop {
            self.out.reserve(256);
            self.state
                .compress_vec(&[], &mut self.out, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            if self.out.len() < self.out.capacity() {
                break;
            }
        }
        Ok(&mut self.out)
    }
}

pub struct DeflateDecoder {
    state: Decompress,
    /// The client ended its stream with a final block: nothing more is read.
    pub finished: bool,
}

impl Default for DeflateDecoder {
    fn default() -> Self {
        DeflateDecoder {
            state: Decompress::new(false),
            finished: false,
        }
    }
}

impl DeflateDecoder {
    /// Inflates what `input` holds into `out`, consuming it. Returns the bytes
    /// added to `out`.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> io::Result<usize> {
        let start = out.len();
        while !self.finished {
            let at = out.len();
            let room = (input.len() * 4).clamp(4096, 64 * 1024);
            out.resize(at + room, 0);
            let (was_in, was_out) = (self.state.total_in(), self.state.total_out());
            let status = self
                .state
                .decompress(input, &mut out[at..], FlushDecompress::None)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (self.state.total_in() - was_in) as usize;
            let made = (self.state.total_out() - was_out) as usize;
            out.truncate(at + made);
            input.advance(used);
            if status == Status::StreamEnd {
                self.finished = true;
            }
            // A full output may hide more; otherwise stop when input runs out.
            if made < room && (input.is_empty() || used == 0) {
                break;
            }
        }
        Ok(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn each_encode_is_decodable_on_its_own() {
        let mut enc = DeflateEncoder::new(6);
        let mut dec = DeflateDecoder::default();
        let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
        for msg in [&b"first"[..], &[b'x'; 300_000][..], b"third"] {
            let wire = enc.encode(msg).unwrap();
            assert!(wire.ends_with(&[0, 0, 0xff, 0xff]), "sync flush marker");
            input.extend_from_slice(wire);
            wire.clear();
            out.clear();
            dec.decode(&mut input, &mut out).unwrap();
            assert_eq!(&out[..], msg);
        }
    }

    #[test]
    fn reads_a_stream_byte_by_byte() {
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        let mut enc = DeflateEncoder::new(9);
        let wire = enc.encode(&text).unwrap().clone();
        let mut dec = DeflateDecoder::default();
        let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
        for b in wire {
            input.extend_from_slice(&[b]);
            dec.decode(&mut input, &mut out).unwrap();
        }
        assert_eq!(out.len(), text.len());
        assert_eq!(&out[..], &text[..]);
    }

    #[test]
    fn output_is_raw_deflate_for_other_decoders() {
        let mut enc = DeflateEncoder::new(1);
        let wire = enc.encode(b"interop").unwrap().clone();
        let mut got = Vec::new();
        let mut r = flate2::read::DeflateDecoder::new(&wire[..]);
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        assert_eq!(got, b"interop");
    }

    #[test]
    fn garbage_is_an_error() {
        let mut input = BytesMut::from(&[0xffu8; 64][..]);
        let err = DeflateDecoder::default()
            .decode(&mut input, &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
