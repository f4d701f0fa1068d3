//! Writes the CRDs generated from the Rust types to `deploy/crds/` and
//! `charts/crds/` (or prints them with `--stdout`). Never edit that YAML by hand.

use clap::Parser;
use std::path::{Path, PathBuf};

/// The workspace this binary was built from: where the CRDs are committed.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[derive(Parser, Debug)]
#[command(
    name = "crdgen",
    version,
    about = "Generates the NsqTopic and NsqChannel CRDs from the operator's Rust types.",
    long_about = "Generates the NsqTopic and NsqChannel CRDs from the operator's Rust types \
                  and writes them to deploy/crds/ and charts/crds/ of the workspace it was \
                  built from (or of --root). Never edit that YAML by hand."
)]
struct Args {
    /// Print the CRDs as one multi-document YAML stream instead of writing files.
    #[arg(long)]
    stdout: bool,
    /// The workspace whose deploy/crds/ and charts/crds/ receive the files.
    #[arg(long, value_name = "DIR", default_value = WORKSPACE)]
    root: PathBuf,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let docs = nsq_operator::crd::crd_yaml();
    if args.stdout {
        for (_, yaml) in &docs {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    for dir in ["deploy/crds", "charts/crds"] {
        let dir = args.root.join(dir);
        std::fs::create_dir_all(&dir)?;
        for (name, yaml) in &docs {
            let path = dir.join(name);
            std::fs::write(&path, yaml)?;
            println!("wrote {}", display(&path));
        }
    }
    Ok(())
}

/// `path` without the `/..` of [`WORKSPACE`], for a readable log line.
fn display(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn no_arguments_write_into_the_workspace() {
        let args = Args::try_parse_from(["crdgen"]).unwrap();
        assert!(!args.stdout);
        assert_eq!(args.root, Path::new(WORKSPACE));
    }

    #[test]
    fn help_and_version_are_answers_not_runs() {
        for flag in ["--help", "-h", "--version", "-V"] {
            let err = Args::try_parse_from(["crdgen", flag]).unwrap_err();
            assert_eq!(err.exit_code(), 0, "{flag}");
        }
        let err = Args::try_parse_from(["crdgen", "--bogus"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
