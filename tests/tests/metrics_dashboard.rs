//! `deploy/grafana/nsq.json` works on what the components export: every
//! metric a PromQL query in it names (panels and template variables) is
//! exported by a live `nsqd` or `nsqlookupd` scraped here, or by the
//! operator's metrics registry (`nsq_operator::metrics::Metrics`, the code
//! behind the operator's `/metrics`, run in-process and populated so every
//! family shows). Label matchers must name labels those series carry (or the
//! target labels Prometheus adds), and the panels the dashboard promises are there.

use nsq_tests::prom::{self, Exposition};
use nsq_tests::{registered_nsqd, same, wait_until, Nsqlookupd};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Labels Prometheus' scrape adds (Kubernetes service discovery, ServiceMonitor).
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "instance",
    "job",
    "pod",
    "service",
    "container",
    "endpoint",
];

/// PromQL's aggregation operators: never metric names, even before `by (...)`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A vector selector in a query: the metric name and the labels its matchers use.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

/// The vector selectors of a PromQL expression. Strings, ranges, numbers,
/// `$variables`, function and aggregation names, keywords and grouping label
/// lists are skipped; every other identifier is a metric name.
fn selectors(expr: &str) -> Vec<Selector> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_ws = |mut j: usize| {
        while j < s.len() && s[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let close = |j: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut k = j;
        let mut in_str = false;
        while k < s.len() {
            let c = s[k];
            if in_str {
                if c == '\\' {
                    k += 1;
                } else if c == '"' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            k += 1;
        }
        panic!("unbalanced {open} in {expr:?}")
    };
    while i < s.len() {
        let c = s[i];
        if c == '"' {
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '[' {
            i = close(i, '[', ']');
        } else if c == '$' {
            i += 1;
            while i < s.len() && (ident_char(s[i]) || s[i] == '{' || s[i] == '}') {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < s.len() && ident_char(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let next = skip_ws(i);
            let next_char = s.get(next).copied();
            if GROUPING.contains(&word.as_str()) {
                // A grouping label list, or a bare `group_left`.
                if next_char == Some('(') {
                    i = close(next, '(', ')');
                }
            } else if next_char == Some('(')
                || AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&word.as_str())
            {
                // A function or an operator.
            } else {
                let mut labels = Vec::new();
                if next_char == Some('{') {
                    let end = close(next, '{', '}');
                    let body: String = s[next + 1..end - 1].iter().collect();
                    labels = matcher_labels(&body);
                    i = end;
                }
                out.push(Selector {
                    metric: word,
                    labels,
                });
            }
        } else if c == '{' {
            panic!("a selector without a metric name in {expr:?}");
        } else {
            i += 1;
        }
    }
    out
}

/// The label names of `a="x", b=~"y"` matchers.
fn matcher_labels(body: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let op = rest
            .find(['=', '!'])
            .unwrap_or_else(|| panic!("bad matcher {body:?}"));
        labels.push(rest[..op].trim().to_owned());
        let q1 = rest.find('"').expect("quoted value");
        let mut k = q1 + 1;
        let b = rest.as_bytes();
        while b[k] != b'"' {
            if b[k] == b'\\' {
                k += 1;
            }
            k += 1;
        }
        rest = rest[k + 1..].trim_start().trim_start_matches(',').trim();
    }
    labels
}

/// `label_values(<selector>, <label>)` → the selector's expression and the label.
fn label_values_query(q: &str) -> (String, String) {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected variable query {q:?}"));
    let (expr, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
    (expr.trim().to_owned(), label.trim().to_owned())
}

/// Every panel, rows' nested panels included.
fn all_panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(all_panels(p));
    }
    out
}

/// Metric name → the label names its series carry.
fn exported(expositions: &[&Exposition]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in expositions {
        for name in e.queryable_names() {
            out.entry(name).or_default();
        }
        for s in &e.series {
            out.entry(s.name.clone())
                .or_default()
                .extend(s.labels.keys().cloned());
        }
    }
    out
}

/// The operator's registry with every family populated, as its `/metrics` serves it.
fn operator_exposition() -> Exposition {
    let m = nsq_operator::metrics::Metrics::new();
    drop(m.reconcile("NsqTopic"));
    m.failure("NsqTopic", "BrokerUnreachable");
    m.set_managed("NsqTopic", 1);
    m.set_brokers(2);
    m.set_leader(true);
    m.set_ready("NsqTopic", "default", "orders", true);
    prom::parse(&m.encode())
}

#[test]
fn selectors_find_metric_names_and_matcher_labels() {
    let got = selectors(
        r#"histogram_quantile(0.99, sum by (le, topic) (rate(a_bucket{namespace=~"$ns", topic=~"x,}y"}[$__rate_interval]))) / on (instance) group_left b and count(c == 0) or vector(1e9)"#,
    );
    assert_eq!(
        got,
        [
            Selector {
                metric: "a_bucket".into(),
                labels: vec!["namespace".into(), "topic".into()]
            },
            Selector {
                metric: "b".into(),
                labels: vec![]
            },
            Selector {
                metric: "c".into(),
                labels: vec![]
            },
        ]
    );
}

#[test]
fn every_dashboard_query_uses_metrics_the_components_export() {
    // A broker and a lookupd with traffic, so every family has series.
    let l = Nsqlookupd::start(&[]);
    let nsqd = registered_nsqd(&[&l], &["--e2e-processing-latency-percentile=0.99"]);
    let mut c = nsqd.connect();
    c.subscribe("t", "c");
    nsqd.connect().publish("t", b"m");
    c.rdy(1);
    let m = c.next_message();
    c.fin(&m.id);
    let lookupd = wait_until(Duration::from_secs(10), "the topic in lookupd", || {
        let e = prom::scrape(l.http_addr());
        same(
            e.get("nsq_lookupd_topic_channels", &[("topic", "t")]),
            Some(1.0),
        )?;
        Ok(e)
    });
    let broker = wait_until(Duration::from_secs(5), "the FIN counted", || {
        let e = prom::scrape(nsqd.http_addr());
        let ch = [("topic", "t"), ("channel", "c")];
        same(
            e.get(
                "nsq_topic_channel_e2e_processing_latency_seconds_count",
                &ch,
            ),
            Some(1.0),
        )?;
        Ok(e)
    });
    let operator = operator_exposition();
    let names = exported(&[&broker, &lookupd, &operator]);

    let path = nsq_tests::pynsq::workspace_root().join("deploy/grafana/nsq.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");

    let mut queries: Vec<(String, String)> = Vec::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {title:?} uses the datasource variable"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        assert!(!targets.is_empty(), "panel {title:?} has no queries");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: {t}"));
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .expect("template variables")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or_default(), v))
        .collect();
    for name in ["datasource", "namespace", "topic", "channel"] {
        assert!(vars.contains_key(name), "no ${name} variable");
    }
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for name in ["namespace", "topic", "channel"] {
        let v = vars[name];
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("variable query");
        let (expr, label) = label_values_query(q);
        assert_eq!(label, name, "${name} lists the {name} label");
        queries.push((format!("${name}"), expr.clone()));
        for s in selectors(&expr) {
            let have = names.get(&s.metric);
            assert!(
                label == "namespace" || have.is_some_and(|l| l.contains(&label)),
                "${name}: {} has no {label} label",
                s.metric
            );
        }
    }

    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let found = selectors(expr);
        assert!(!found.is_empty(), "{title:?}: no metric in {expr:?}");
        for s in found {
            let labels = names.get(&s.metric).unwrap_or_else(|| {
                panic!(
                    "{title:?} queries {} which nothing exports ({expr:?})",
                    s.metric
                )
            });
            for l in &s.labels {
                assert!(
                    TARGET_LABELS.contains(&l.as_str()) || labels.contains(l),
                    "{title:?}: {} has no label {l} ({expr:?})",
                    s.metric
                );
            }
            used.insert(s.metric);
        }
    }

    // What the dashboard promises to show.
    for metric in [
        "nsq_topic_message_count",
        "nsq_topic_message_bytes",
        "nsq_topic_depth",
        "nsq_topic_backend_depth",
        "nsq_topic_channel_message_count",
        "nsq_topic_channel_depth",
        "nsq_topic_channel_backend_depth",
        "nsq_topic_channel_in_flight_count",
        "nsq_topic_channel_deferred_count",
        "nsq_topic_channel_requeue_count",
        "nsq_topic_channel_timeout_count",
        "nsq_topic_channel_clients",
        "nsq_topic_channel_e2e_processing_latency_seconds_bucket",
        "nsq_topic_e2e_processing_latency_seconds_bucket",
        "nsq_healthy",
        "nsq_mem_heap_in_use_bytes",
        "nsq_operator_reconciles_total",
        "nsq_operator_reconcile_failures_total",
        "nsq_operator_reconcile_duration_seconds_bucket",
        "nsq_operator_leader",
        "nsq_operator_managed_resources",
        "nsq_operator_brokers",
    ] {
        assert!(used.contains(metric), "the dashboard never shows {metric}");
    }

    // Panel ids are unique and panels sit on the 24-column grid.
    let mut ids = BTreeSet::new();
    for p in all_panels(&dash) {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "panel {} overflows the grid", p["title"]);
    }
}
