//! Version strings: the NSQ release we are wire-compatible with, and our own.

/// The NSQ release whose behaviour we reproduce; clients parse this.
pub const NSQ_VERSION: &str = "1.3.0";

/// This project's own crate version.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The one-line `--version` text, shaped like Go NSQ's: `nsqd v1.3.0 (built w/rustc-1.95.0)`.
pub fn version_line(app: &str) -> String {
    format!(
        "{app} v{NSQ_VERSION} (built w/{})",
        env!("NSQ_RUSTC_VERSION")
    )
}
