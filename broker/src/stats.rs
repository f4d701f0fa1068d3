//! Placeholder until stats land.
