//! TCP protocol V2: the command parser, IDENTIFY negotiation, errors, and the
//! per-connection loop.

pub mod command;
pub mod error;
pub mod identify;
pub mod v2;
