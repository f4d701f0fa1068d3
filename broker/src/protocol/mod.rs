//! TCP protocol V2: the command parser, IDENTIFY negotiation, errors, the
//! per-connection loop, and the stream under it (TLS, snappy, deflate).

pub mod command;
pub mod deflate;
pub mod error;
pub mod identify;
pub mod snappy;
pub mod transport;
pub mod v2;
