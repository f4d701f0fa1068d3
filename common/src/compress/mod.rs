//! The stream compressions protocol V2 negotiates in IDENTIFY: [`snappy`]'s
//! framing format and raw [`deflate`]. Pure transforms between buffers, shared
//! by the broker and the `bench` client; each side keeps its encoder and
//! decoder (and their buffers) for the connection's life.

pub mod deflate;
pub mod snappy;
