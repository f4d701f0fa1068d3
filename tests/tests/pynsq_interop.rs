//! The broker through PyPI's `pynsq` (Writer and Reader on Tornado).

use nsq_tests::{pynsq, Nsqd};

#[test]
fn pynsq_writer_and_reader_round_trip_every_message_once() {
    let nsqd = Nsqd::start(&[]);
    let n = 200;
    let (report, stderr) = pynsq::run_script(
        "pynsq_roundtrip.py",
        &[
            nsqd.tcp_addr().to_string(),
            "pynsq_topic".into(),
            n.to_string(),
        ],
    );
    assert_eq!(
        report,
        serde_json::json!({"published": n, "received": n, "unique": n, "errors": []}),
        "stderr: {stderr}"
    );
}
