// Records the compiler version for `--version` lines, as Go NSQ records its Go version.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NSQ_RUSTC_VERSION=rustc-{version}");
    println!("cargo:rerun-if-changed=build.rs");
}
