//! Go-style flags (filled in by the flags work).
