//! The `bench` binary run by tests, and its one-line `role: key=value ...`
//! summary.

use crate::daemon;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::str::FromStr;

/// `bench ROLE`, with no AUTH secret inherited from the environment.
pub fn bench_command(role: &str) -> Command {
    let mut cmd = Command::new(daemon::binary("bench", "BENCH_BIN"));
    cmd.arg(role)
        .env_remove("NSQ_AUTH_SECRET")
        .stdin(Stdio::null());
    cmd
}

/// What one bench run did.
pub struct BenchRun {
    pub status: ExitStatus,
    /// The `key=value` fields of the stdout line.
    pub fields: BTreeMap<String, String>,
    pub stdout: String,
    pub stderr: String,
}

impl BenchRun {
    /// Parses a finished run's output, and echoes it for the test log.
    pub fn from_output(out: Output) -> BenchRun {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields = stdout
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{stdout}{stderr}");
        BenchRun {
            status: out.status,
            fields,
            stdout,
            stderr,
        }
    }

    pub fn field(&self, key: &str) -> &str {
        self.fields.get(key).map_or_else(
            || panic!("no {key}= in {:?}; stderr:\n{}", self.stdout, self.stderr),
            String::as_str,
        )
    }

    pub fn num<T: FromStr>(&self, key: &str) -> T
    where
        T::Err: Display,
    {
        self.field(key)
            .parse()
            .unwrap_or_else(|e| panic!("{key}={}: {e}", self.field(key)))
    }

    /// Exit 0 with the `role: ` summary line.
    #[track_caller]
    pub fn assert_ok(&self, role: &str) {
        assert!(
            self.status.success() && self.stdout.starts_with(&format!("{role}: ")),
            "bench {role} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// Exit 1 with a `FAIL:` line naming `reason`.
    #[track_caller]
    pub fn assert_failed(&self, reason: &str) {
        assert_eq!(self.status.code(), Some(1), "stderr: {}", self.stderr);
        let fail = self.stderr.lines().find(|l| l.contains("FAIL: "));
        assert!(
            fail.is_some_and(|l| l.contains(reason)),
            "expected a FAIL line with {reason:?}; stderr: {}",
            self.stderr
        );
    }
}
