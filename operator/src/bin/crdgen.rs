//! Writes the CRDs generated from the Rust types to `deploy/crds/` and
//! `charts/crds/` (or prints them with `--stdout`). Never edit that YAML by hand.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let docs = nsq_operator::crd::crd_yaml();
    if std::env::args().any(|a| a == "--stdout") {
        for (_, yaml) in &docs {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["deploy/crds", "charts/crds"] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir)?;
        for (name, yaml) in &docs {
            std::fs::write(dir.join(name), yaml)?;
            println!("wrote {}", dir.join(name).display());
        }
    }
    Ok(())
}
