//! The stream compressions protocol V2 negotiates in IDENTIFY: [`snappy`]'s
//! framing format and raw [`deflate`]. Pure transforms between buffers, shared
//! by the broker, the `bench` client and the tests; each side keeps its
//! [`Codec`] (and so its buffers) for the connection's life.

pub mod deflate;
pub mod snappy;

use bytes::BytesMut;
use deflate::{DeflateDecoder, DeflateEncoder};
use snappy::{SnappyDecoder, SnappyEncoder};
use std::io;

/// A connection's compression, both directions; `None` until IDENTIFY turns
/// one on.
#[derive(Default)]
pub enum Codec {
    #[default]
    None,
    Snappy(Box<(SnappyEncoder, SnappyDecoder)>),
    Deflate(Box<(DeflateEncoder, DeflateDecoder)>),
}

impl Codec {
    pub fn snappy() -> Codec {
        Codec::Snappy(Box::default())
    }

    /// Deflate at `level` (1..=9).
    pub fn deflate(level: u32) -> Codec {
        Codec::Deflate(Box::new((
            DeflateEncoder::new(level),
            DeflateDecoder::default(),
        )))
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Codec::None)
    }

    /// Compresses `data`, returning the bytes to send (the caller empties the
    /// buffer once sent); `None` without compression: send `data` as is.
    pub fn encode(&mut self, data: &[u8]) -> io::Result<Option<&mut Vec<u8>>> {
        match self {
            Codec::None => Ok(None),
            Codec::Snappy(c) => c.0.encode(data).map(Some),
            Codec::Deflate(c) => c.0.encode(data).map(Some),
        }
    }

    /// Decodes what `input` holds into `out` (without compression, moves it);
    /// returns the bytes added to `out`.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> io::Result<usize> {
        match self {
            Codec::None => {
                let n = input.len();
                out.extend_from_slice(&input.split());
                Ok(n)
            }
            Codec::Snappy(c) => c.1.decode(input, out),
            Codec::Deflate(c) => c.1.decode(input, out),
        }
    }

    /// The peer ended its deflate stream: nothing more will decode.
    pub fn finished(&self) -> bool {
        matches!(self, Codec::Deflate(c) if c.1.finished)
    }
}
