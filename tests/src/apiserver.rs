//! A real kube-apiserver (with etcd) for the operator tests, and a per-test
//! view of it.
//!
//! One API server per test binary: the first [`Kube::new`] starts it with
//! `scripts/kube/start-apiserver.sh` in a temporary directory and installs the
//! CRDs from `deploy/crds/`. It is stopped (`stop-apiserver.sh DIR --purge`)
//! when the test process exits: by an `atexit` hook on a normal exit (libtest
//! exits through `exit(3)` whether tests passed or failed), and by a watchdog
//! process, in its own session, that waits for the end of a pipe only the test
//! process holds, so it also cleans up after a test process that was killed.
//! Set `NSQ_KUBE_KEEP=1` to keep the directory (logs, etcd data) for a look.
//!
//! Each test gets a [`Kube`]: a namespace of its own and a `kube::Client` on a
//! runtime of its own, with blocking helpers, so tests stay plain `#[test]`s
//! like the rest of the suite.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The field manager of the tests' server-side applies (`kubectl apply
/// --server-side` would use `kubectl`).
pub const FIELD_MANAGER: &str = "nsq-tests";

/// The workspace root (the directory holding `deploy/` and `scripts/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn kube_script(name: &str) -> PathBuf {
    workspace_root().join("scripts/kube").join(name)
}

/// The running API server of this test process.
#[derive(Debug)]
pub struct ApiServer {
    /// `start-apiserver.sh`'s directory: `env`, `kubeconfig`, logs.
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// How long start-up (processes, then CRDs) took.
    pub started_in: Duration,
}

static SERVER: OnceLock<Result<ApiServer, String>> = OnceLock::new();
/// The directory to stop at exit, once something was started there.
static STOP_DIR: OnceLock<PathBuf> = OnceLock::new();

/// This process's API server, started (with the CRDs installed) on first use.
/// A failed start is reported to every test that needs it, without retrying.
pub fn api_server() -> &'static ApiServer {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn start() -> Result<ApiServer, String> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("nsq-kube-test-")
        .tempdir()
        .map_err(|e| format!("create the API server's directory: {e}"))?
        .keep();
    if STOP_DIR.set(dir.clone()).is_err() {
        return Err("an API server was already started by this process".into());
    }
    // SAFETY: registers a plain `extern "C" fn()`; atexit has no other
    // preconditions.
    if unsafe { libc::atexit(stop_at_exit) } != 0 {
        return Err("atexit failed".into());
    }
    // In a session of its own and writing to a file (not a pipe that could
    // break), so that nothing cuts it short and leaves etcd running without
    // an `env` file to find it by; the watchdog waits for it to finish before
    // stopping what it started.
    let log_path = dir.join("start-apiserver.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
    let mut cmd = Command::new(kube_script("start-apiserver.sh"));
    cmd.arg(&dir).stdin(Stdio::null()).stdout(log).stderr(log2);
    own_session(&mut cmd);
    let mut starter = cmd
        .spawn()
        .map_err(|e| format!("run start-apiserver.sh: {e}"))?;
    spawn_watchdog(&dir, starter.id())?;
    let status = starter
        .wait()
        .map_err(|e| format!("wait for start-apiserver.sh: {e}"))?;
    if !status.success() {
        return Err(format!(
            "start-apiserver.sh {} failed ({status}); run scripts/kube/build-apiserver.sh first \
             (scripts/test does). Output:\n{}",
            dir.display(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        ));
    }
    let env = std::fs::read_to_string(dir.join("env"))
        .map_err(|e| format!("read {}/env: {e}", dir.display()))?;
    let url = env
        .lines()
        .find_map(|l| l.strip_prefix("APISERVER_URL="))
        .ok_or_else(|| format!("no APISERVER_URL in {}/env:\n{env}", dir.display()))?
        .to_owned();
    let server = ApiServer {
        kubeconfig: dir.join("kubeconfig"),
        dir,
        url,
        started_in: Duration::ZERO,
    };
    let rt = runtime();
    rt.block_on(async {
        let client = server.client().await?;
        install_crds(&client).await
    })?;
    Ok(ApiServer {
        started_in: started.elapsed(),
        ..server
    })
}

impl ApiServer {
    /// An admin client from `DIR/kubeconfig`; call it inside the runtime that
    /// will use it.
    pub async fn client(&self) -> Result<Client, String> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| format!("read {}: {e}", self.kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("kubeconfig {}: {e}", self.kubeconfig.display()))?;
        Client::try_from(config).map_err(|e| format!("kube client: {e}"))
    }

    /// The last `n` lines of the API server's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Creates every CRD in `deploy/crds/` and waits until each is Established.
async fn install_crds(client: &Client) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = workspace_root().join("deploy/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no CRDs in {}", dir.display()));
    }
    let mut names = Vec::new();
    for path in &files {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)
            .map_err(|e| format!("{} is not a CRD: {e}", path.display()))?;
        crds.create(&PostParams::default(), &crd)
            .await
            .map_err(|e| format!("install {}: {e}", path.display()))?;
        names.push(crd.metadata.name.unwrap_or_default());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in names {
        loop {
            let crd = crds
                .get(&name)
                .await
                .map_err(|e| format!("get CRD {name}: {e}"))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not Established within 30s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The `atexit` hook: stops the API server synchronously on a normal exit.
extern "C" fn stop_at_exit() {
    if let Some(dir) = STOP_DIR.get() {
        let _ = stop_command(dir).status();
    }
}

/// Puts the child in a session (and process group) of its own.
fn own_session(cmd: &mut Command) {
    // SAFETY: setsid(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// The watchdog, for a test process that ends without running `atexit`
/// hooks (killed): in its own session (a Ctrl-C on the terminal does not
/// reach it), it blocks reading a pipe whose write end only this process
/// holds (std opens pipes close-on-exec, so no other child inherits it). The
/// read returns when this process is gone, however it ended; it then waits
/// for `start-apiserver.sh` (pid `starter`) to finish and stops what it
/// started. After a normal exit that finds nothing left to stop.
fn spawn_watchdog(dir: &Path, starter: u32) -> Result<(), String> {
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        .arg(
            r#"read -r line
while kill -0 "$3" 2>/dev/null; do sleep 0.2; done
exec "$0" "$1" $2"#,
        )
        .arg(kube_script("stop-apiserver.sh"))
        .arg(dir)
        .arg(purge_flag())
        .arg(starter.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    own_session(&mut watchdog);
    let mut child = watchdog
        .spawn()
        .map_err(|e| format!("spawn the API server watchdog: {e}"))?;
    // Held open, on purpose, until the process exits.
    std::mem::forget(child.stdin.take());
    Ok(())
}

fn purge_flag() -> &'static str {
    if std::env::var_os("NSQ_KUBE_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
        ""
    } else {
        "--purge"
    }
}

fn stop_command(dir: &Path) -> Command {
    let mut cmd = Command::new(kube_script("stop-apiserver.sh"));
    cmd.arg(dir);
    if !purge_flag().is_empty() {
        cmd.arg(purge_flag());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The HTTP status of a failed API request (422 for a schema violation).
pub fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// One test's view of the API server: its own namespace, and a client on a
/// runtime of its own.
pub struct Kube {
    client: Client,
    namespace: String,
    // Last, so the client is dropped before its runtime.
    rt: tokio::runtime::Runtime,
}

impl Kube {
    /// A client and a fresh namespace named after the running test.
    pub fn new() -> Kube {
        let server = api_server();
        let rt = runtime();
        let client = rt
            .block_on(server.client())
            .unwrap_or_else(|e| panic!("{e}"));
        let namespace = namespace_for_this_test();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace},
        }))
        .expect("namespace object");
        rt.block_on(Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns))
            .unwrap_or_else(|e| panic!("create namespace {namespace}: {e}"));
        Kube {
            client,
            namespace,
            rt,
        }
    }

    pub fn server(&self) -> &'static ApiServer {
        api_server()
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Runs `f` on this test's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The namespaced API of `K` in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The API of an arbitrary namespaced kind in this test's namespace.
    pub fn dynamic_api(&self, api_version: &str, kind: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
    }

    /// Server-side applies every document of `yaml` in this test's namespace,
    /// as `kubectl apply --server-side -n <ns>` would.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<DynamicObject>, kube::Error> {
        let mut applied = Vec::new();
        for doc in documents(yaml) {
            let api = self.dynamic_api(str_at(&doc, "apiVersion"), str_at(&doc, "kind"));
            let name = doc["metadata"]["name"].as_str().expect("metadata.name");
            let obj = self.block_on(api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&doc),
            ))?;
            applied.push(obj);
        }
        Ok(applied)
    }

    /// [`Kube::apply_yaml`] on a file of the workspace (e.g.
    /// `deploy/examples/topic.yaml`), panicking on failure.
    pub fn apply_file(&self, relative: &str) -> Vec<DynamicObject> {
        let path = workspace_root().join(relative);
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        self.apply_yaml(&yaml)
            .unwrap_or_else(|e| panic!("apply {relative}: {e}"))
    }

    /// Creates the one object in `yaml` (a POST, as `kubectl create` does).
    pub fn create_yaml(&self, yaml: &str) -> Result<DynamicObject, kube::Error> {
        let docs = documents(yaml);
        assert_eq!(docs.len(), 1, "create_yaml takes one document");
        let doc = &docs[0];
        let api = self.dynamic_api(str_at(doc, "apiVersion"), str_at(doc, "kind"));
        let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("an object");
        self.block_on(api.create(&PostParams::default(), &obj))
    }

    /// The object, or `None` when it does not exist.
    pub fn get<K>(&self, name: &str) -> Option<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.block_on(self.api::<K>().get_opt(name))
            .unwrap_or_else(|e| panic!("get {} {name}: {e}", K::kind(&())))
    }

    /// Deletes the object (it may linger while finalizers run).
    pub fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.block_on(self.api::<K>().delete(name, &DeleteParams::default()))
            .unwrap_or_else(|e| panic!("delete {} {name}: {e}", K::kind(&())));
    }

    /// Polls the object every 100 ms until `check` (given the object, or
    /// `None` while it does not exist) returns `Ok`; panics with `what` and
    /// the last `Err` after `timeout`.
    #[track_caller]
    pub fn wait_for<K, T>(
        &self,
        timeout: Duration,
        name: &str,
        what: &str,
        mut check: impl FnMut(Option<&K>) -> Result<T, String>,
    ) -> T
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.block_on(self.api::<K>().get_opt(name)) {
                Ok(obj) => match check(obj.as_ref()) {
                    Ok(v) => return v,
                    Err(e) => e,
                },
                Err(e) => format!("get {} {name}: {e}", K::kind(&())),
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {} {}/{name}: {what}; last seen: {last}",
                    K::kind(&()),
                    self.namespace
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `events.k8s.io/v1` Events in this test's namespace.
    pub fn events(&self) -> Vec<Event> {
        self.block_on(self.api::<Event>().list(&ListParams::default()))
            .unwrap_or_else(|e| panic!("list events in {}: {e}", self.namespace))
            .items
    }
}

impl Default for Kube {
    fn default() -> Self {
        Self::new()
    }
}

/// The YAML documents of `yaml` as JSON values (empty documents skipped).
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_json::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'a>(doc: &'a serde_json::Value, key: &str) -> &'a str {
    doc[key]
        .as_str()
        .unwrap_or_else(|| panic!("document without {key}: {doc}"))
}

/// A DNS-label namespace from the test thread's name (libtest names each
/// test's thread after the test), unique within the process.
fn namespace_for_this_test() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let test = test.rsplit("::").next().unwrap_or(test);
    let mut base: String = test
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    base.truncate(50);
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "test" } else { base };
    format!("{base}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multi_document_yaml() {
        let docs = documents("---\na: 1\n---\n\n---\nb: x\n");
        assert_eq!(
            docs,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": "x"})]
        );
    }
}
