//! The CRDs: the committed YAML is what the Rust types generate, and the API
//! server, given that YAML, refuses bad NSQ names at admission (HTTP 422)
//! before any operator sees them.

use nsq_tests::apiserver::{api_status, workspace_root};
use nsq_tests::Kube;
use std::collections::BTreeMap;
use std::path::Path;

const CRD_DIRS: [&str; 2] = ["deploy/crds", "charts/crds"];

/// Every `*.yaml` in `dir`, by file name.
fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (name, text)
        })
        .collect()
}

/// The first line where `got` and `want` differ, for the failure message.
fn first_difference(got: &str, want: &str) -> String {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for i in 0..g.len().max(w.len()) {
        if g.get(i) != w.get(i) {
            return format!(
                "line {}: committed {:?}, generated {:?}",
                i + 1,
                g.get(i),
                w.get(i)
            );
        }
    }
    "only in line endings".into()
}

#[test]
fn committed_crd_yaml_is_what_the_rust_types_generate() {
    let generated: BTreeMap<String, String> = nsq_operator::crd::crd_yaml()
        .into_iter()
        .map(|(name, yaml)| (name.to_owned(), yaml))
        .collect();
    assert_eq!(generated.len(), 2, "NsqTopic and NsqChannel");
    for dir in CRD_DIRS {
        let committed = yaml_files(&workspace_root().join(dir));
        assert_eq!(
            committed.keys().collect::<Vec<_>>(),
            generated.keys().collect::<Vec<_>>(),
            "{dir}/ holds other files than the generated CRDs; \
             regenerate with `cargo run -p nsq-operator --bin crdgen`"
        );
        for (name, want) in &generated {
            let got = &committed[name];
            assert!(
                got == want,
                "{dir}/{name} differs from what nsq_operator::crd::crd_yaml() generates ({}); \
                 regenerate with `cargo run -p nsq-operator --bin crdgen`, never edit it by hand",
                first_difference(got, want)
            );
        }
    }
}

#[test]
fn deploy_and_chart_crds_are_identical() {
    let [deploy, chart] = CRD_DIRS.map(|d| yaml_files(&workspace_root().join(d)));
    assert!(!deploy.is_empty(), "no CRDs in deploy/crds");
    assert_eq!(
        deploy.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "deploy/crds and charts/crds hold different files"
    );
    for (name, text) in &deploy {
        assert!(
            &chart[name] == text,
            "deploy/crds/{name} and charts/crds/{name} differ ({})",
            first_difference(&chart[name], text)
        );
    }
}

/// The HTTP status with which the API server refuses to create `yaml`, or
/// `Ok` with the created object's name.
fn create(kube: &Kube, yaml: &str) -> Result<String, (Option<u16>, String)> {
    kube.create_yaml(yaml)
        .map(|o| o.metadata.name.unwrap_or_default())
        .map_err(|e| (api_status(&e), e.to_string()))
}

fn topic_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: nsq.io/v1alpha1\nkind: NsqTopic\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn channel_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: nsq.io/v1alpha1\nkind: NsqChannel\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

fn assert_refused(kube: &Kube, what: &str, yaml: &str) {
    match create(kube, yaml) {
        Err((Some(422), _)) => {}
        other => panic!("{what}: want HTTP 422 (Invalid), got {other:?}"),
    }
}

#[test]
fn examples_pass_admission() {
    let kube = Kube::new();
    for file in ["deploy/examples/topic.yaml", "deploy/examples/channel.yaml"] {
        let yaml = std::fs::read_to_string(workspace_root().join(file)).expect("example");
        create(&kube, &yaml).unwrap_or_else(|e| panic!("{file} refused: {e:?}"));
    }
}

#[test]
fn topic_names_nsq_would_refuse_are_refused_at_admission() {
    let kube = Kube::new();
    let max = "t".repeat(64);
    let too_long = "t".repeat(65);
    assert_refused(
        &kube,
        "topicName with a space",
        &topic_yaml("a", "  topicName: \"has space\"\n"),
    );
    assert_refused(
        &kube,
        "topicName of 65 characters",
        &topic_yaml("b", &format!("  topicName: {too_long}\n")),
    );
    assert_refused(
        &kube,
        "empty topicName",
        &topic_yaml("c", "  topicName: \"\"\n"),
    );
    assert_refused(
        &kube,
        "topicName with a slash",
        &topic_yaml("d", "  topicName: a/b\n"),
    );
    assert_refused(
        &kube,
        "unknown deletionPolicy",
        &topic_yaml("e", "  deletionPolicy: Forget\n"),
    );
    for (name, spec) in [
        ("max", format!("  topicName: {max}\n")),
        (
            "ephemeral",
            "  topicName: \"x_y.z-1#ephemeral\"\n".to_owned(),
        ),
        ("defaulted", "  paused: true\n".to_owned()),
    ] {
        create(&kube, &topic_yaml(name, &spec))
            .unwrap_or_else(|e| panic!("valid topic {name} ({spec:?}) refused: {e:?}"));
    }
}

#[test]
fn channels_without_exactly_one_topic_or_with_bad_names_are_refused_at_admission() {
    let kube = Kube::new();
    assert_refused(
        &kube,
        "channel with neither topicName nor topicRef",
        &channel_yaml("a", "  channelName: billing\n"),
    );
    assert_refused(
        &kube,
        "channel with both topicName and topicRef",
        &channel_yaml("b", "  topicName: orders\n  topicRef:\n    name: orders\n"),
    );
    assert_refused(
        &kube,
        "channelName with a space",
        &channel_yaml("c", "  topicName: orders\n  channelName: \"bad name\"\n"),
    );
    assert_refused(
        &kube,
        "channelName of 65 characters",
        &channel_yaml(
            "d",
            &format!("  topicName: orders\n  channelName: {}\n", "c".repeat(65)),
        ),
    );
    assert_refused(
        &kube,
        "topicName of 65 characters",
        &channel_yaml("e", &format!("  topicName: {}\n", "t".repeat(65))),
    );
    create(&kube, &channel_yaml("by-name", "  topicName: orders\n"))
        .expect("channel with topicName only");
    create(
        &kube,
        &channel_yaml("by-ref", "  topicRef:\n    name: orders\n"),
    )
    .expect("channel with topicRef only");
}
