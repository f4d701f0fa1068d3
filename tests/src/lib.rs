//! Test harness: starts the real binaries.
