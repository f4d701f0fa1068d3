//! The broker through PyPI's `pynsq` (Writer and Reader on Tornado).

use nsq_tests::{pynsq, Nsqd};
use std::process::Command;

#[test]
fn pynsq_writer_and_reader_round_trip_every_message_once() {
    let python = pynsq::python();
    let nsqd = Nsqd::start(&[]);
    let n = 200;
    let out = Command::new(&python)
        .arg(pynsq::python_dir().join("pynsq_roundtrip.py"))
        .arg(nsqd.tcp_addr().to_string())
        .arg("pynsq_topic")
        .arg(n.to_string())
        .output()
        .expect("run the pynsq script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pynsq script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad report ({e}): {stdout}\n{stderr}"));
    assert_eq!(
        report,
        serde_json::json!({"published": n, "received": n, "unique": n, "errors": []}),
        "stderr: {stderr}"
    );
}
