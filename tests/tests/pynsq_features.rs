//! PyPI's `pynsq` (Writer and Reader on Tornado, python-snappy for snappy)
//! over TLS, snappy, deflate, and TLS with each compression inside: one run
//! of `tests/python/pynsq_features.py` per mode, with exact counts and the
//! stream flags `/stats` shows for both clients while they are connected.

use nsq_tests::certs::Pki;
use nsq_tests::{pynsq, Nsqd};
use serde_json::json;

/// Messages published with PUB, and as many again in one MPUB.
const N: usize = 200;

fn run_mode(mode: &str) {
    let pki = Pki::new();
    let mut args = pki.nsqd_args();
    // TCP needs TLS in the TLS modes; /stats stays on plain HTTP for the script.
    if mode.contains("tls") {
        args.push("--tls-required=tcp-https".into());
    }
    let nsqd = Nsqd::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (report, stderr) = pynsq::run_script(
        "pynsq_features.py",
        &[
            nsqd.tcp_addr().to_string(),
            nsqd.http_addr().to_string(),
            pki.ca.display().to_string(),
            mode.to_string(),
            N.to_string(),
        ],
    );
    assert_eq!(
        (
            &report["published"],
            &report["received"],
            &report["unique"],
            &report["errors"]
        ),
        (&json!(2 * N), &json!(2 * N), &json!(2 * N), &json!([])),
        "{mode}: {report}\n{stderr}"
    );

    let tls = mode.contains("tls");
    // pynsq asks for TLS 1.2 (ssl.PROTOCOL_TLSv1_2).
    let want = json!({
        "tls": tls,
        "tls_version": if tls { "TLS1.2" } else { "" },
        "snappy": mode.contains("snappy"),
        "deflate": mode.contains("deflate"),
    });
    for side in ["reader", "writer"] {
        let c = &report[side];
        let got = json!({
            "tls": c["tls"],
            "tls_version": c["tls_version"],
            "snappy": c["snappy"],
            "deflate": c["deflate"],
        });
        assert_eq!(got, want, "{mode}: the {side}'s /stats entry {c}");
        let counts = match side {
            "reader" => (&c["finish_count"], json!(2 * N)),
            _ => (
                &c["pub_counts"],
                json!([{"topic": "pynsq_features", "count": 2 * N}]),
            ),
        };
        assert_eq!(counts.0, &counts.1, "{mode}: the {side}'s /stats entry {c}");
        let suite = c["tls_cipher_suite"].as_str().unwrap_or_default();
        if tls {
            // Go's name for an ECDHE suite with the test CA's ECDSA server key.
            assert!(
                suite.starts_with("TLS_ECDHE_ECDSA_WITH_"),
                "{side}: {suite:?}"
            );
        } else {
            assert_eq!(suite, "", "{side}");
        }
    }
}

#[test]
fn pynsq_round_trips_over_tls() {
    run_mode("tls");
}

#[test]
fn pynsq_round_trips_over_snappy() {
    run_mode("snappy");
}

#[test]
fn pynsq_round_trips_over_deflate() {
    run_mode("deflate");
}

#[test]
fn pynsq_round_trips_over_tls_and_snappy() {
    run_mode("tls+snappy");
}

#[test]
fn pynsq_round_trips_over_tls_and_deflate() {
    run_mode("tls+deflate");
}
