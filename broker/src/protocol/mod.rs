//! TCP protocol V2: the command parser, IDENTIFY negotiation, errors, the
//! per-connection loop, and the stream under it (TLS, then snappy or deflate
//! from [`nsq_common::compress`]).

pub mod command;
pub mod error;
pub mod identify;
pub mod transport;
pub mod v2;
