//! A throw-away Kubernetes control plane for tests: etcd and
//! kube-apiserver (and, when asked, kube-controller-manager) built by
//! `scripts/k8s`, all inside one fresh network namespace
//! `realip-test-<unique>` and bound to its 127.0.0.1, so nothing we start
//! is reachable from, or reaches, anything outside it. Certificates are
//! made with rcgen (the same kinds `scripts/k8s --check` makes with
//! openssl). Processes are stopped by their PID and the namespace is
//! deleted when the [`Cluster`] is dropped, failed test or not.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// This node (node-1) and one Service, `default/web` on 10.96.100.10:80,
/// with its slice: one ready endpoint, 10.244.1.10:8080 on node-1.
pub const WEB: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.100.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.10], nodeName: node-1, conditions: {ready: true}}]
"#;

/// Where `scripts/k8s` put its binaries: `REALIP_K8S_BIN`, else the
/// workspace's target/k8s/bin.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("REALIP_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/k8s/bin"))
}

/// `Ok` when the binaries these tests run are there; else why not.
pub fn binaries() -> Result<PathBuf, String> {
    let dir = bin_dir();
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
    ] {
        if !dir.join(b).is_file() {
            return Err(format!(
                "{} is missing: build the Kubernetes binaries with scripts/k8s, or point \
                 REALIP_K8S_BIN at them",
                dir.join(b).display()
            ));
        }
    }
    Ok(dir)
}

/// A process we started, stopped by its own PID when dropped.
pub struct Proc(Option<Child>);

impl Proc {
    /// Stop it now (SIGKILL: an abrupt outage is what the tests want).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its exit code, once it has exited.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.0.as_mut()?.try_wait().ok()??.code()
    }

    /// It is still running.
    pub fn alive(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A network namespace we made, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The control plane; see the module header.
pub struct Cluster {
    // Processes are stopped (and files removed) in `drop`; the fields
    // then drop in this order, the namespace last but the CA.
    pub apiserver: Proc,
    etcd: Proc,
    others: Vec<Proc>,
    netns: Netns,
    pub dir: PathBuf,
    bin: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

const API: &str = "https://127.0.0.1:6443";

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.others.iter_mut().rev() {
            p.stop();
        }
        self.apiserver.stop();
        self.etcd.stop();
        // The namespace goes when its field is dropped, after this.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {} for a look", self.dir.display());
        }
    }
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Cluster {
    /// etcd and kube-apiserver up and ready in a new namespace.
    pub fn start(bin: &Path, dir: PathBuf) -> Cluster {
        let name = format!(
            "realip-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let netns = Netns(name);
        let ok = Command::new("ip")
            .args(["-n", &netns.0, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "lo up in {}", netns.0);
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "realip test cluster CA");
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        let mut cluster = Cluster {
            apiserver: Proc(None),
            etcd: Proc(None),
            others: Vec::new(),
            netns,
            dir,
            bin: bin.to_path_buf(),
            ca,
            ca_key,
        };
        cluster.sign(
            "apiserver",
            &["127.0.0.1", "localhost", "kubernetes.default.svc"],
            "kube-apiserver",
            None,
        );
        // The service-account token key pair.
        let sa = KeyPair::generate().unwrap();
        std::fs::write(cluster.dir.join("sa.key"), sa.serialize_pem()).unwrap();
        std::fs::write(cluster.dir.join("sa.pub"), sa.public_key_pem()).unwrap();
        cluster.kubeconfig("admin", "realip-test-admin", Some("system:masters"));
        let etcd_data = cluster.dir.join("etcd");
        let etcd = cluster.spawn(
            "etcd",
            &[
                "--name=test",
                &format!("--data-dir={}", etcd_data.display()),
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=test=http://127.0.0.1:2380",
                // A throw-away data dir on a shared disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        );
        cluster.etcd = etcd;
        let ns = cluster.netns.0.clone();
        wait_until("etcd /health", Duration::from_secs(30), || {
            http_get(&ns, "127.0.0.1:2379", "/health").contains("\"health\":\"true\"")
        });
        cluster.start_apiserver();
        cluster
    }

    /// Start kube-apiserver (again, after [`Proc::stop`]) and wait until
    /// it is ready.
    pub fn start_apiserver(&mut self) {
        let d = self.dir.display().to_string();
        self.apiserver = self.spawn(
            "kube-apiserver",
            &[
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--secure-port=6443",
                // v1.37 exits at start with a loopback advertise address
                // unless the endpoint reconciler is off (scripts/k8s).
                "--endpoint-reconciler-type=none",
                "--etcd-servers=http://127.0.0.1:2379",
                "--service-cluster-ip-range=10.96.0.0/16",
                &format!("--tls-cert-file={d}/apiserver.crt"),
                &format!("--tls-private-key-file={d}/apiserver.key"),
                &format!("--client-ca-file={d}/ca.crt"),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={d}/sa.pub"),
                &format!("--service-account-signing-key-file={d}/sa.key"),
                "--authorization-mode=Node,RBAC",
                &format!("--cert-dir={d}/apiserver-certs"),
                "--profiling=false",
            ],
        );
        let limit = Duration::from_secs(180);
        let end = Instant::now() + limit;
        loop {
            let out = self.kubectl(&["get", "--raw=/readyz"], None);
            if out.status.success() {
                break;
            }
            assert!(
                self.apiserver.alive(),
                "kube-apiserver exited:\n{}",
                self.log_tail("kube-apiserver")
            );
            assert!(
                Instant::now() < end,
                "kube-apiserver not ready within {limit:?}:\n{}",
                self.log_tail("kube-apiserver")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// kube-controller-manager with only `controllers`, as the admin.
    pub fn start_controller_manager(&mut self, controllers: &str) {
        let d = self.dir.display().to_string();
        let kcm = self.spawn(
            "kube-controller-manager",
            &[
                &format!("--kubeconfig={d}/admin.kubeconfig"),
                &format!("--controllers={controllers}"),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10257",
                &format!("--cert-dir={d}/kcm-certs"),
                "--profiling=false",
            ],
        );
        self.others.push(kcm);
    }

    /// The namespace's name.
    pub fn netns(&self) -> &str {
        &self.netns.0
    }

    /// A certificate for `cn` (in group `org`) signed by the cluster CA,
    /// written as NAME.crt and NAME.key.
    fn sign(&self, name: &str, sans: &[&str], cn: &str, org: Option<&str>) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// A kubeconfig NAME.kubeconfig for user `cn` (in group `org`).
    pub fn kubeconfig(&self, name: &str, cn: &str, org: Option<&str>) -> PathBuf {
        self.sign(name, &[], cn, org);
        let d = self.dir.display();
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{API}\", certificate-authority: \"{d}/ca.crt\"}}\n\
                 users:\n- name: {name}\n  user: {{client-certificate: \"{d}/{name}.crt\", client-key: \"{d}/{name}.key\"}}\n\
                 contexts:\n- name: test\n  context: {{cluster: test, user: {name}}}\ncurrent-context: test\n"
            ),
        )
        .unwrap();
        path
    }

    fn spawn(&self, bin: &str, args: &[&str]) -> Proc {
        let log = std::fs::File::create(self.dir.join(format!("{bin}.log"))).unwrap();
        Proc(Some(
            Command::new("ip")
                .args(["netns", "exec", &self.netns.0])
                .arg(self.bin.join(bin))
                .args(args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        ))
    }

    /// `realip ARGS` in the namespace, its stderr in `log`, logging as it
    /// does by default (no RUST_LOG).
    pub fn realip(&self, args: &[&str], log: &Path) -> Proc {
        Proc(Some(
            Command::new("ip")
                .args(["netns", "exec", &self.netns.0, env!("CARGO_BIN_EXE_realip")])
                .args(args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        ))
    }

    /// kubectl as the admin, in the namespace; `stdin` for `-f -`.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let d = self.dir.display().to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns.0])
            .arg(self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={d}/admin.kubeconfig"))
            // Never ~/.kube: our discovery cache.
            .arg(format!("--cache-dir={d}/kubectl-cache"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command in the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns.0])
            .args(args)
            .output()
            .unwrap()
    }

    /// The nftables ruleset of the namespace.
    pub fn ruleset(&self) -> String {
        String::from_utf8_lossy(&self.exec(&["nft", "list", "ruleset"]).stdout).into_owned()
    }

    /// The last lines of a component's log.
    pub fn log_tail(&self, bin: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{bin}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// One HTTP/1.0 GET inside namespace `ns` (2 s at most): the whole
/// response, "" on refusal or timeout.
pub fn http_get(ns: &str, addr: &str, path: &str) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: test\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "2", "bash", "-c", &script])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
