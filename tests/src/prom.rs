//! `/metrics` scrapes read with a real Prometheus text-format parser
//! (`openmetrics-parser`'s Prometheus grammar, which rejects malformed lines,
//! families declared twice, duplicate series and histograms without `+Inf`).

use crate::http;
use openmetrics_parser::{MetricNumber, PrometheusType, PrometheusValue};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// One series: its labels and value. A histogram gives one series per
/// `_bucket` (with `le`), `_sum` and `_count`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name → its TYPE (`counter`, `gauge`, `histogram`, ...).
    pub types: BTreeMap<String, String>,
    pub series: Vec<Series>,
}

/// Parses `text`; panics with the parser's error (and the text) if it is not
/// valid Prometheus text format.
pub fn parse(text: &str) -> Exposition {
    let parsed = openmetrics_parser::prometheus::parse_prometheus(text).unwrap_or_else(|e| {
        let head: String = text.chars().take(4000).collect();
        panic!("not valid Prometheus text format: {e:?}\n{head}")
    });
    let mut out = Exposition::default();
    for (name, family) in &parsed.families {
        let kind = match family.family_type {
            PrometheusType::Counter => "counter",
            PrometheusType::Gauge => "gauge",
            PrometheusType::Histogram => "histogram",
            PrometheusType::Summary => "summary",
            PrometheusType::Unknown => "untyped",
        };
        out.types.insert(name.clone(), kind.to_owned());
        for sample in family.iter_samples() {
            let labels: BTreeMap<String, String> = sample
                .get_labelset()
                .expect("label set")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut push = |suffix: &str, extra: Option<(&str, String)>, value: f64| {
                let mut labels = labels.clone();
                if let Some((k, v)) = extra {
                    labels.insert(k.to_owned(), v);
                }
                out.series.push(Series {
                    name: format!("{name}{suffix}"),
                    labels,
                    value,
                });
            };
            match &sample.value {
                PrometheusValue::Unknown(n) | PrometheusValue::Gauge(n) => push("", None, num(n)),
                PrometheusValue::Counter(c) => push("", None, num(&c.value)),
                PrometheusValue::Histogram(h) => {
                    for b in &h.buckets {
                        push("_bucket", Some(("le", le(b.upper_bound))), num(&b.count));
                    }
                    if let Some(s) = &h.sum {
                        push("_sum", None, num(s));
                    }
                    if let Some(c) = h.count {
                        push("_count", None, c as f64);
                    }
                }
                PrometheusValue::Summary(s) => {
                    if let Some(v) = &s.sum {
                        push("_sum", None, num(v));
                    }
                    if let Some(c) = s.count {
                        push("_count", None, c as f64);
                    }
                }
            }
        }
    }
    out
}

fn num(n: &MetricNumber) -> f64 {
    n.as_f64()
}

/// A bucket bound as the exposition writes it (`0.005`, `10`, `+Inf`).
fn le(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        format!("{bound}")
    }
}

/// `GET /metrics` on `addr`: asserts a 200 with Prometheus' text content type,
/// then parses the body.
pub fn scrape(addr: SocketAddr) -> Exposition {
    parse(&scrape_text(addr))
}

/// The raw body of `GET /metrics` (asserting the status and content type).
pub fn scrape_text(addr: SocketAddr) -> String {
    let r = http::request(addr, "GET", "/metrics", &[])
        .unwrap_or_else(|e| panic!("GET /metrics on {addr} failed: {e}"));
    assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

impl Exposition {
    /// The value of the series `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Exposition::get`], panicking with the series of that name if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?}; have: {:#?}", self.named(name)))
    }

    /// Every series called `name`.
    pub fn named(&self, name: &str) -> Vec<&Series> {
        self.series.iter().filter(|s| s.name == name).collect()
    }

    /// The TYPE of family `name`.
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// The names a PromQL query can use: each family's name, and for a
    /// histogram also its `_bucket`, `_sum` and `_count` series.
    pub fn queryable_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, kind) in &self.types {
            names.insert(name.clone());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
        names.extend(self.series.iter().map(|s| s.name.clone()));
        names
    }

    /// The distinct values of label `label` across the series called `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.named(name)
            .into_iter()
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}
