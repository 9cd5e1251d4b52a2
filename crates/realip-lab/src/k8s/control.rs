//! The control plane in its namespace: etcd on the namespace's own
//! loopback, kube-apiserver on the fabric (https://10.0.0.2:6443, where
//! the nodes reach it), kube-controller-manager running the EndpointSlice
//! controller only. Flags as `scripts/k8s --check` proved them for
//! v1.37.2; each process logs to a file in the run's directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::Proc;
use crate::topology::CONTROL_IP;

use super::bin::K8sBin;
use super::error::K8sError;
use super::kubectl::Kubectl;
use super::pki::{Identity, Pki};

/// The apiserver's port on [`CONTROL_IP`].
pub const API_PORT: u16 = 6443;

/// `--service-cluster-ip-range`: kubeadm's default, which holds the
/// scenarios' fixed ClusterIPs (10.96.0.10 ...), and an IPv6 range for
/// dual-stack Services (fd00:96::a ...): the lab is dual-stack.
pub const SERVICE_CIDR: &str = "10.96.0.0/12,fd00:96::/112";

/// `--service-node-port-range`: the default, which holds the scenarios'
/// fixed nodePorts and healthCheckNodePorts.
pub const NODE_PORT_RANGE: &str = "30000-32767";

/// How long etcd may take to say READY=1 on a loaded machine.
const ETCD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the apiserver may take to pass /readyz: its post-start hooks
/// (RBAC's bootstrap policy, the service IP repair loop) take seconds on
/// an idle machine and much longer on two busy cores.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(180);

/// How often /readyz is asked.
const READY_POLL: Duration = Duration::from_millis(300);

/// The controllers run: the one that writes EndpointSlices, and the
/// deployment and ReplicaSet controllers that make a Deployment's Pods
/// (which the lab then places and runs, as scheduler and kubelet). No
/// serviceaccount controller (the lab makes the ServiceAccounts), no node
/// lifecycle controller (it would taint Nodes whose kubelet never posts a
/// heartbeat), no garbage collector.
const CONTROLLERS: &str = "endpointslice,deployment,replicaset";

/// The running control plane.
pub struct ControlPlane {
    procs: Vec<Proc>,
    bin: K8sBin,
    pki: Pki,
    kubectl: Kubectl,
    dir: PathBuf,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The apiserver's URL, as the nodes and the controller-manager dial it.
pub fn server_url() -> String {
    format!("https://{CONTROL_IP}:{API_PORT}")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl ControlPlane {
    /// Make the certificates in `dir/pki`, then start etcd, the apiserver
    /// (wait for /readyz) and the controller-manager in `netns`.
    pub fn start(bin: &K8sBin, netns: &str, dir: &Path) -> Result<ControlPlane, K8sError> {
        let pki = Pki::generate(&dir.join("pki"))?;
        let server = server_url();
        let admin = pki.client(&Identity::admin(), &server)?;
        let kcm_config = pki.client(&Identity::controller_manager(), &server)?;
        let kubectl = Kubectl::new(
            netns,
            &bin.path("kubectl"),
            &admin,
            &dir.join("kubectl-cache"),
        );
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let file = |name: &str| path(pki.file(name));
        let mut procs = Vec::new();

        // etcd: the namespace's own loopback, so fixed ports never clash
        // with another run's. A throw-away data dir: no fsync.
        let etcd_args = strings(&[
            "--name",
            "control",
            "--data-dir",
            &path(dir.join("etcd")),
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "control=http://127.0.0.1:2380",
            "--unsafe-no-fsync",
            "--log-level",
            "warn",
        ]);
        let mut etcd = Proc::start_logged(
            netns,
            dir,
            &bin.path("etcd"),
            &etcd_args,
            "etcd",
            &dir.join("etcd.log"),
        )?;
        // etcd says READY=1 (sd_notify) once it serves clients.
        etcd.wait_ready_within(ETCD_TIMEOUT)?;
        procs.push(etcd);

        let api_args = strings(&[
            &format!("--bind-address={CONTROL_IP}"),
            &format!("--advertise-address={CONTROL_IP}"),
            &format!("--secure-port={API_PORT}"),
            "--etcd-servers=http://127.0.0.1:2379",
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            &format!("--service-node-port-range={NODE_PORT_RANGE}"),
            &format!("--tls-cert-file={}", file("apiserver.crt")),
            &format!("--tls-private-key-file={}", file("apiserver.key")),
            &format!("--client-ca-file={}", file("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            &format!("--service-account-key-file={}", file("sa.pub")),
            &format!("--service-account-signing-key-file={}", file("sa.key")),
            "--authorization-mode=Node,RBAC",
            &format!("--cert-dir={}", path(dir.join("apiserver-certs"))),
            "--profiling=false",
        ]);
        let mut apiserver = Proc::start_logged(
            netns,
            dir,
            &bin.path("kube-apiserver"),
            &api_args,
            "kube-apiserver",
            &dir.join("kube-apiserver.log"),
        )?;
        let started = Instant::now();
        // READY=1 comes once it serves, before its post-start hooks are
        // done; /readyz waits for those too.
        apiserver.wait_ready_within(APISERVER_TIMEOUT)?;
        let left = APISERVER_TIMEOUT.saturating_sub(started.elapsed());
        wait_until(&mut apiserver, left, || {
            kubectl
                .run(&["get", "--raw=/readyz"], None)
                .map(|s| s.trim() == "ok")
        })?;
        procs.push(apiserver);
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "kube-apiserver ready"
        );

        let kcm_args = strings(&[
            &format!("--kubeconfig={}", path(kcm_config.clone())),
            &format!("--authentication-kubeconfig={}", path(kcm_config.clone())),
            &format!("--authorization-kubeconfig={}", path(kcm_config)),
            "--bind-address=127.0.0.1",
            "--secure-port=10257",
            &format!("--cert-dir={}", path(dir.join("kcm-certs"))),
            &format!("--controllers={CONTROLLERS}"),
            "--leader-elect=false",
            // Each controller under its own ServiceAccount, as in a real
            // cluster, with the RBAC bootstrap policy's roles.
            "--use-service-account-credentials=true",
            "--profiling=false",
        ]);
        procs.push(Proc::start_logged(
            netns,
            dir,
            &bin.path("kube-controller-manager"),
            &kcm_args,
            "kube-controller-manager",
            &dir.join("kube-controller-manager.log"),
        )?);
        Ok(ControlPlane {
            procs,
            bin: bin.clone(),
            pki,
            kubectl,
            dir: dir.to_path_buf(),
        })
    }

    /// The binaries it runs (and kube-proxy, for `--proxy`).
    pub fn bin(&self) -> &K8sBin {
        &self.bin
    }

    /// kubectl with the admin kubeconfig.
    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }

    /// The certificates.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Where the control plane's logs and files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An error if one of the components has exited.
    pub fn check(&mut self) -> Result<(), K8sError> {
        for p in &mut self.procs {
            if let Some(status) = p.exited() {
                return Err(K8sError::Exited {
                    what: p.what.clone(),
                    status,
                    last: p.last_lines(),
                });
            }
        }
        Ok(())
    }
}

/// Retry `check` every [`READY_POLL`] until it says yes; fail when `proc`
/// exits or `timeout` passes.
fn wait_until(
    proc: &mut Proc,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, K8sError>,
) -> Result<(), K8sError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => "not yet".to_string(),
            Err(K8sError::Interrupted) => return Err(K8sError::Interrupted),
            Err(e) => e.to_string(),
        };
        if let Some(status) = proc.exited() {
            return Err(K8sError::Exited {
                what: proc.what.clone(),
                status,
                last: proc.last_lines(),
            });
        }
        if Instant::now() >= deadline {
            return Err(K8sError::NotReady {
                what: proc.what.clone(),
                timeout,
                last,
            });
        }
        std::thread::sleep(READY_POLL);
    }
}
