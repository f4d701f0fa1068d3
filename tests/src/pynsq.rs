//! The Python virtualenv with PyPI's `pynsq`, created once and cached.
//!
//! Location: `PYNSQ_VENV`, else `<workspace>/.venv`. Versions are pinned in
//! `tests/python/requirements.txt`. `scripts/test` builds the venv before the
//! suite; a test that finds it missing builds it itself, and any failure panics
//! with pip's output (nothing is skipped).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises venv creation between tests in one process.
static BUILD: Mutex<()> = Mutex::new(());

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits in the workspace")
        .to_path_buf()
}

/// The Python scripts and requirements shipped with the tests.
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

pub fn venv_dir() -> PathBuf {
    std::env::var_os("PYNSQ_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// The venv's interpreter, creating the venv and installing the pinned
/// requirements first if `import nsq, tornado, snappy` does not work yet.
pub fn python() -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let venv = venv_dir();
    let py = venv.join("bin").join("python");
    if py.is_file() && imports_ok(&py) {
        return py;
    }
    let base = ["python3.11", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no python3.11 or python3 on PATH: needed to build the pynsq venv");
    run(
        Command::new(base).args(["-m", "venv"]).arg(&venv),
        "create the venv",
    );
    run(
        Command::new(&py)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-r"])
            .arg(python_dir().join("requirements.txt")),
        "pip install the pinned requirements",
    );
    assert!(
        imports_ok(&py),
        "pynsq installed into {} but `import nsq, tornado, snappy` still fails",
        venv.display()
    );
    py
}

fn imports_ok(py: &Path) -> bool {
    Command::new(py)
        .args(["-c", "import nsq, tornado, snappy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tests/python/<script>` with `args` in the venv; it must exit 0 and
/// print one JSON report, which is returned (with the script's stderr).
pub fn run_script<S: AsRef<std::ffi::OsStr>>(
    script: &str,
    args: &[S],
) -> (serde_json::Value, String) {
    let out = Command::new(python())
        .arg(python_dir().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script}: bad report ({e}): {stdout}\n{stderr}"));
    (report, stderr)
}
