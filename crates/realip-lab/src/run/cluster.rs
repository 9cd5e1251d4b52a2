//! A scenario's cluster, up and ready: the namespaces, the pods, the node
//! agents, the cloud LB, and with `--api` the control plane under them.
//! `lab run` probes it; `lab up` keeps it until Ctrl-C.
//!
//! The order is what makes a probe trustworthy. From files, everything
//! starts at once and each component's READY=1 is awaited (an agent says
//! it after its first sync of the one file there is). On the API, each
//! step waits for the one before: the apiserver passes /readyz, the
//! objects are applied, each pod's process says READY=1 and only then is
//! its Pod marked Ready, the EndpointSlice controller has written exactly
//! what the scenario's slices say, the agents get that state (phase 1:
//! the lab copies it into their files before starting them, so their
//! first sync, which READY=1 follows, is of the final state), and only
//! then does the LB start and its settle time run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::k8s::control::server_url;
use crate::k8s::mirror::Mirror;
use crate::k8s::objects::{node_status, pod_status, translate, ApiObjects};
use crate::k8s::pki::Identity;
use crate::k8s::slices::differences;
use crate::k8s::{ControlPlane, K8sBin, K8sError};
use crate::manifest::parse_documents;
use crate::process::Proc;
use crate::scenario::{parse_millis, Probe, Scenario, Step, KUBECONFIG};
use crate::topology::{node_ip, node_ip6, node_pod_cidr6, plan, unique_id, Lab, Role, Spec};

use super::agents::{wait_settled, AgentObjects, Proxy, METRICS};
use super::error::RunError;

mod kubelet;
use kubelet::Kubelet;

/// How long the EndpointSlice controller may take to write the slices.
const SLICES_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the slices are read while waiting for them.
const SLICES_POLL: Duration = Duration::from_millis(250);

/// What a value named but not written in files mode needs.
const FILES_HINT: &str =
    " as written (only the apiserver allocates what a Service leaves out: run with --api)";

/// How the agents' objects file is polled: often enough that `lab up`
/// follows a `kubectl apply` within about a second.
const AGENT_POLL: &str = "1s";

/// [`AGENT_POLL`] as a duration.
const AGENT_POLL_PERIOD: Duration = Duration::from_secs(1);

/// How a scenario runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// On a real control plane from these binaries (`--api`); from the
    /// scenario's objects file when `None`.
    pub api: Option<K8sBin>,
    /// With `--api`, how the agents get the objects; `None`: watch when
    /// `realip node` can ([`AgentObjects::detect`]).
    pub agents: Option<AgentObjects>,
    /// The node agent (`--proxy`); kube-proxy needs `--api`.
    pub proxy: Proxy,
}

/// The control plane and what the lab applied to it.
struct Api {
    control: ControlPlane,
    objects: ApiObjects,
    agents: AgentObjects,
    /// Phase 1: the files the agents read.
    mirror: Mirror,
    /// Phase 2: each agent's kubeconfig, node-1 first.
    kubeconfigs: Vec<PathBuf>,
}

/// A running cluster. Dropping it stops every process (the lab's own,
/// then the control plane's) and deletes the namespaces.
pub struct Cluster {
    // Fields drop in this order: the processes before the namespaces.
    kubelet: Kubelet,
    proxy: Proxy,
    procs: Vec<Proc>,
    api: Option<Api>,
    lab: Lab,
    scenario: Scenario,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("plan", self.lab.plan())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Bring scenario `s` up, its files in `dir` (which exists): on the
    /// control plane from `api`'s binaries when given, else from the
    /// scenario's objects file. `exe` is realip itself. Returns once every
    /// component is ready and the LB has settled.
    pub fn up(
        s: &Scenario,
        exe: &Path,
        dir: &Path,
        options: &Options,
    ) -> Result<Cluster, RunError> {
        let api = options.api.as_ref();
        if api.is_none() && s.needs_api() {
            return Err(RunError::NeedsApi(s.name.clone()));
        }
        if options.proxy != Proxy::Realip
            && (api.is_none() || options.agents == Some(AgentObjects::Files))
        {
            return Err(RunError::KubeProxyNeedsApi(options.proxy));
        }
        let t0 = Instant::now();
        let lab = Lab::build(plan(
            &Spec {
                pods_per_node: s.pods.clone(),
                control: api.is_some(),
            },
            &unique_id(),
        )?)?;
        let step = |what: &str| {
            tracing::debug!(
                scenario = %s.name,
                seconds = t0.elapsed().as_secs_f64(),
                "{what}"
            )
        };
        step("namespaces built");
        let mut c = Cluster {
            kubelet: Kubelet::new(exe, dir),
            proxy: options.proxy,
            procs: Vec::new(),
            api: None,
            lab,
            scenario: s.clone(),
        };
        // From here an error drops `c`: everything started is stopped.
        match api {
            Some(bin) => {
                let agents = match options.proxy {
                    Proxy::Realip => options.agents.unwrap_or_else(|| AgentObjects::detect(exe)),
                    Proxy::KubeProxy(_) => AgentObjects::Watch,
                };
                c.start_control(bin, s, dir, agents)?;
                step("control plane ready, objects applied");
            }
            None => c.read_allocations(s, None, FILES_HINT)?,
        }
        // What runs from here on is the scenario with its values read.
        let s = &c.scenario.clone();
        let mut pods = Vec::new();
        for (i, &count) in s.pods.iter().enumerate() {
            for j in 0..count {
                let n = i + 1;
                if c.kubelet.free.contains(&(n, j)) {
                    // For the controllers' Pods, started once placed.
                    continue;
                }
                let ns = c.netns(&Role::Pod(n, j))?;
                let what = format!("pod/{n}/{j}");
                c.procs
                    .push(Proc::start(&ns, dir, exe, &s.pod_program(n, j), &what)?);
                pods.push((n, j));
            }
        }
        let mut waited = 0;
        if c.api.is_some() {
            c.agents_on_api(s, exe, dir, &pods, &step)?;
            waited = c.procs.len();
        } else if !s.objects.trim().is_empty() {
            let objects = dir.join("objects.yaml");
            std::fs::write(&objects, format!("{}{}", node_objects(&s.pods), s.objects))
                .map_err(RunError::Write)?;
            let source = ["--objects".into(), objects.to_string_lossy().into_owned()];
            for n in 1..=s.pods.len() {
                c.start_agent(exe, dir, n, &source)?;
            }
        }
        c.start_router(s, exe, dir)?;
        // Everyone up: the agents synced, the servers listening.
        for p in &mut c.procs[waited..] {
            p.wait_ready()?;
        }
        step("ready");
        if let Some(ms) = s
            .router
            .as_ref()
            .and_then(|r| r.settle.as_deref())
            .and_then(parse_millis)
        {
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(c)
    }

    /// The scenario as it runs: with the values it names read from the
    /// Services.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The lab's namespaces.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The namespace of a role.
    pub fn netns(&self, r: &Role) -> Result<String, RunError> {
        self.lab
            .plan()
            .netns(r)
            .map(str::to_string)
            .ok_or_else(|| RunError::NoHost(r.clone()))
    }

    /// The control plane, with `--api`.
    pub fn control(&self) -> Option<&ControlPlane> {
        self.api.as_ref().map(|a| &a.control)
    }

    /// Whether pod J of node N is a slot for the controllers' Pods.
    pub fn free_slot(&self, n: usize, j: usize) -> bool {
        self.kubelet.free.contains(&(n, j))
    }

    /// The node agent.
    pub fn proxy(&self) -> Proxy {
        self.proxy
    }

    /// How the agents get the objects, with `--api`.
    pub fn agents(&self) -> Option<AgentObjects> {
        self.api.as_ref().map(|a| a.agents)
    }

    /// The files the agents read their objects from, with `--api` in
    /// phase 1.
    pub fn objects_files(&self) -> Vec<PathBuf> {
        self.api
            .as_ref()
            .map(|a| a.mirror.files().to_vec())
            .unwrap_or_default()
    }

    /// Keep the agents' files in step with the apiserver (phase 1), every
    /// `period`, until `stop` says so. A failed copy is logged and tried
    /// again; a component that exits is reported once.
    pub fn follow(&mut self, period: Duration, stop: impl Fn() -> bool) {
        let mut reported = false;
        while !stop() {
            let started = Instant::now();
            match self.reconcile() {
                Ok(_) | Err(RunError::Api(K8sError::Interrupted)) => {}
                Err(e) => tracing::warn!(error = %e, "placing and running the controllers' Pods"),
            }
            if let Some(api) = &mut self
                .api
                .as_mut()
                .filter(|a| a.agents == AgentObjects::Files)
            {
                match api.mirror.sync(api.control.kubectl()) {
                    Ok(true) => tracing::info!("objects changed; the agents' files rewritten"),
                    Ok(false) => {}
                    Err(K8sError::Interrupted) => return,
                    Err(e) => tracing::warn!(error = %e, "copying the objects to the agents"),
                }
                if let (false, Err(e)) = (reported, api.control.check()) {
                    tracing::error!(error = %e, "the control plane is down");
                    reported = true;
                }
            }
            std::thread::sleep(period.saturating_sub(started.elapsed()));
        }
    }

    /// Run a live scenario's step: its kubectl commands against the
    /// apiserver, then wait for the change to settle (the Pods, the
    /// slices, every agent synced after it) and the step's settle time.
    /// Its probes, with the values they name read from the Services as
    /// they are now.
    pub fn step(&mut self, st: &Step) -> Result<Vec<Probe>, RunError> {
        let Some(api) = &self.api else {
            return Err(RunError::NeedsApi(self.scenario.name.clone()));
        };
        let kubectl = api.control.kubectl().clone();
        for args in &st.kubectl {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl.run(&args, None)?;
        }
        self.settle(&st.name)?;
        self.wait_agents()?;
        if let Some(ms) = st.settle.as_deref().and_then(parse_millis) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let list = kubectl.get_json(&["services", "-A"])?;
        let services = list["items"].as_array().cloned().unwrap_or_default();
        Scenario::step_probes(st, &services)
            .map_err(|source| RunError::Placeholder { source, hint: "" })
    }

    /// Start the control plane and apply the scenario's objects to it.
    fn start_control(
        &mut self,
        bin: &K8sBin,
        s: &Scenario,
        dir: &Path,
        agents: AgentObjects,
    ) -> Result<(), RunError> {
        let control = ControlPlane::start(bin, &self.netns(&Role::Control)?, &dir.join("control"))?;
        let objects = translate(s).map_err(K8sError::from)?;
        apply(&control, &objects, &dir.join("control/objects.json"))?;
        for n in 1..=s.pods.len() {
            let status = serde_json::json!({ "status": node_status(n) });
            control
                .kubectl()
                .patch_status("node", &format!("node-{n}"), None, &status)?;
        }
        if s.names_allocations() {
            let list = control.kubectl().get_json(&["services", "-A"])?;
            let services = list["items"].as_array().cloned().unwrap_or_default();
            self.read_allocations(s, Some(&services), "")?;
        }
        let mut files = Vec::new();
        let mut kubeconfigs = Vec::new();
        for n in 1..=s.pods.len() {
            match agents {
                AgentObjects::Files => files.push(dir.join(format!("objects-node-{n}.yaml"))),
                AgentObjects::Watch => kubeconfigs.push(
                    control
                        .pki()
                        .client(&Identity::kube_proxy(n), &server_url())?,
                ),
            }
        }
        self.kubelet.free = objects.free.clone();
        self.api = Some(Api {
            control,
            objects,
            agents,
            mirror: Mirror::new(files),
            kubeconfigs,
        });
        Ok(())
    }

    /// The scenario to run: `s` with the values it names read from
    /// `services` (the apiserver's), or from its objects as written.
    fn read_allocations(
        &mut self,
        s: &Scenario,
        services: Option<&[serde_json::Value]>,
        hint: &'static str,
    ) -> Result<(), RunError> {
        if !s.names_allocations() {
            return Ok(());
        }
        let written;
        let services = match services {
            Some(list) => list,
            None => {
                written = parse_documents(&s.objects)
                    .map_err(|source| RunError::Placeholder { source, hint: "" })?;
                &written
            }
        };
        self.scenario = s
            .with_allocations(services)
            .map_err(|source| RunError::Placeholder { source, hint })?;
        Ok(())
    }

    /// The cloud LB on the router.
    fn start_router(&mut self, s: &Scenario, exe: &Path, dir: &Path) -> Result<(), RunError> {
        let Some(r) = &s.router else {
            return Ok(());
        };
        let router = self.netns(&Role::Router)?;
        if r.tproxy {
            tproxy(&router)?;
        }
        let args = match &r.config {
            Some(text) => {
                let f = dir.join("lb.yaml");
                std::fs::write(&f, text).map_err(RunError::Write)?;
                vec![
                    "lb".to_string(),
                    "--config".into(),
                    f.to_string_lossy().into_owned(),
                ]
            }
            None => {
                let mut a = vec!["lb".to_string()];
                a.extend(r.lb.iter().cloned());
                if a.iter().any(|x| x.contains(KUBECONFIG)) {
                    let api = self
                        .api
                        .as_ref()
                        .ok_or(RunError::NeedsApi(s.name.clone()))?;
                    let file = api.control.pki().client(&Identity::lb(), &server_url())?;
                    let file = file.to_string_lossy();
                    for x in &mut a {
                        *x = x.replace(KUBECONFIG, &file);
                    }
                }
                a
            }
        };
        self.procs.push(Proc::start(
            &router,
            dir,
            exe,
            &args,
            "realip lb on the router",
        )?);
        Ok(())
    }

    /// With `--api`: as each pod's process says READY=1, mark its Pod
    /// Running and Ready (the lab as kubelet); wait for the slices; give
    /// the agents that state and wait for their first sync.
    fn agents_on_api(
        &mut self,
        s: &Scenario,
        exe: &Path,
        dir: &Path,
        pods: &[(usize, usize)],
        step: &dyn Fn(&str),
    ) -> Result<(), RunError> {
        for (k, &(n, j)) in pods.iter().enumerate() {
            self.procs[k].wait_ready()?;
            self.mark_running(s, n, j)?;
        }
        step("pods running and ready");
        if !self.kubelet.free.is_empty() {
            self.settle("the objects applied")?;
            step("the controllers' Pods placed and running");
        }
        self.wait_for_slices()?;
        self.wait_watch_cache(Instant::now() + SLICES_TIMEOUT)?;
        step("EndpointSlices written");
        let Some(api) = &mut self.api else {
            return Ok(());
        };
        // Each agent's source: the file the lab writes now (phase 1), or
        // the apiserver itself (phase 2).
        let sources: Vec<[String; 2]> = match api.agents {
            AgentObjects::Files => {
                api.mirror.sync(api.control.kubectl())?;
                api.mirror
                    .files()
                    .iter()
                    .map(|f| ["--objects".into(), f.to_string_lossy().into_owned()])
                    .collect()
            }
            AgentObjects::Watch => api
                .kubeconfigs
                .iter()
                .map(|k| ["--kubeconfig".into(), k.to_string_lossy().into_owned()])
                .collect(),
        };
        let watch = api.agents == AgentObjects::Watch;
        let first = self.procs.len();
        for (i, source) in sources.iter().enumerate() {
            match self.proxy {
                Proxy::Realip => self.start_agent(exe, dir, i + 1, source)?,
                Proxy::KubeProxy(mode) => self.start_kube_proxy(dir, i + 1, &source[1], mode)?,
            }
        }
        if self.proxy == Proxy::Realip {
            for p in &mut self.procs[first..] {
                p.wait_ready()?;
            }
        }
        if watch {
            for n in 1..=sources.len() {
                wait_settled(&self.netns(&Role::Node(n))?, n, self.proxy != Proxy::Realip)?;
            }
        }
        step("agents synced");
        Ok(())
    }

    /// `realip node` on node N, with `source` (`--objects FILE` or
    /// `--kubeconfig FILE`).
    fn start_agent(
        &mut self,
        exe: &Path,
        dir: &Path,
        n: usize,
        source: &[String; 2],
    ) -> Result<(), RunError> {
        let ip = node_ip(n).to_string();
        let args: Vec<String> = [
            "node",
            &source[0],
            &source[1],
            "--node",
            &format!("node-{n}"),
            "--health-address",
            &ip,
            "--healthz",
            &format!("{ip}:10256"),
            "--metrics-bind-address",
            METRICS,
            "--poll",
            AGENT_POLL,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let ns = self.netns(&Role::Node(n))?;
        self.procs.push(Proc::start(
            &ns,
            dir,
            exe,
            &args,
            &format!("realip node on node-{n}"),
        )?);
        Ok(())
    }

    /// The real kube-proxy on node N in `mode`, watching with
    /// `kubeconfig` (user system:kube-proxy) as realip node would: its
    /// health server on the node's address :10256, its metrics on the
    /// namespace's loopback :10249, the pods' CIDR for telling local
    /// traffic, and the conntrack table left as the kernel sized it. It
    /// says nothing on a readiness socket; the lab waits for its first
    /// sync on /metrics instead.
    fn start_kube_proxy(
        &mut self,
        dir: &Path,
        n: usize,
        kubeconfig: &str,
        mode: crate::run::agents::KubeProxyMode,
    ) -> Result<(), RunError> {
        let Some(api) = &self.api else {
            return Err(RunError::KubeProxyNeedsApi(self.proxy));
        };
        let exe = api.control.bin().path("kube-proxy");
        let ip = node_ip(n).to_string();
        let args: Vec<String> = [
            &format!("--kubeconfig={kubeconfig}"),
            &format!("--hostname-override=node-{n}"),
            &format!("--proxy-mode={}", mode.as_str()),
            "--cluster-cidr=10.244.0.0/16,fd00:244::/48",
            &format!("--healthz-bind-address={ip}:10256"),
            &format!("--metrics-bind-address={METRICS}"),
            "--conntrack-max-per-core=0",
            "--v=2",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let ns = self.netns(&Role::Node(n))?;
        let log = dir.join(format!("kube-proxy-node-{n}.log"));
        self.procs.push(Proc::start_logged(
            &ns,
            dir,
            &exe,
            &args,
            &format!("kube-proxy ({}) on node-{n}", mode.as_str()),
            &log,
        )?);
        Ok(())
    }

    /// Pod J of node N is up: write its status (every Pod object of it).
    fn mark_running(&self, s: &Scenario, n: usize, j: usize) -> Result<(), RunError> {
        let Some(api) = &self.api else {
            return Ok(());
        };
        for p in api.objects.pods.iter().filter(|p| p.host == (n, j)) {
            let status = pod_status(s, n, j, p.ready);
            api.control
                .kubectl()
                .patch_status("pod", &p.name, Some(&p.namespace), &status)?;
        }
        Ok(())
    }

    /// Wait until every Service's slices hold what the scenario's say.
    fn wait_for_slices(&mut self) -> Result<(), RunError> {
        let Some(api) = &mut self.api else {
            return Ok(());
        };
        let deadline = Instant::now() + SLICES_TIMEOUT;
        loop {
            api.control.check()?;
            let list = api
                .control
                .kubectl()
                .get_json(&["endpointslices.discovery.k8s.io", "-A"])?;
            let diff = differences(&api.objects.expected, &list);
            if diff.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(K8sError::Slices {
                    timeout: SLICES_TIMEOUT,
                    differences: diff.join("; "),
                }
                .into());
            }
            std::thread::sleep(SLICES_POLL);
        }
    }
}

/// Apply the objects with kubectl (server-side, as one List). Retried a
/// few times: right after /readyz an admission plugin's cache may not
/// have seen a Namespace made a moment before. `--validate=false`: with
/// validation kubectl first fetches the OpenAPI document to learn whether
/// the server validates fields itself, and a new apiserver takes 1.5 s to
/// build it; the apiserver still refuses invalid values (a nodePort out of
/// range, a taken ClusterIP), and unknown fields are ignored as `realip
/// node` ignores them in files mode.
fn apply(control: &ControlPlane, objects: &ApiObjects, file: &Path) -> Result<(), K8sError> {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects.apply});
    let text = serde_json::to_string_pretty(&list).unwrap_or_default();
    std::fs::write(file, text).map_err(|source| K8sError::File {
        path: file.to_path_buf(),
        source,
    })?;
    let file = file.to_string_lossy();
    let args = [
        "apply",
        "--server-side",
        "--field-manager=realip-lab",
        "--validate=false",
        "-f",
        &file,
    ];
    let mut tries = 0;
    loop {
        match control.kubectl().run(&args, None) {
            Ok(_) => return Ok(()),
            Err(e @ K8sError::Kubectl { .. }) if tries < 4 => {
                tracing::debug!(error = %e, "apply refused; again");
                tries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The Node objects of the topology, for `realip node` from files.
fn node_objects(pods: &[usize]) -> String {
    let mut out = String::new();
    for n in 1..=pods.len() {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}}}\nspec: {{podCIDR: 10.244.{n}.0/24, podCIDRs: [10.244.{n}.0/24, \"{}\"]}}\nstatus: {{addresses: [{{type: InternalIP, address: {}}}, {{type: InternalIP, address: \"{}\"}}]}}\n---\n",
            node_pod_cidr6(n),
            node_ip(n),
            node_ip6(n)
        ));
    }
    out
}

/// The reply routing `realip lb --client-ip transparent` needs (see its
/// `--help`), in the router's namespace.
fn tproxy(netns: &str) -> Result<(), RunError> {
    // Both families (inet): the lab is dual-stack.
    let rules = "table inet realip-tproxy {\n chain pre {\n  type filter hook prerouting priority mangle;\n  socket transparent 1 meta mark set 1\n }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::NftMissing)?;
    if let Some(mut stdin) = nft.stdin.take() {
        stdin.write_all(rules.as_bytes()).map_err(RunError::Nft)?;
    }
    let o = nft.wait_with_output().map_err(RunError::Nft)?;
    if !o.status.success() {
        return Err(RunError::NftRefused {
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    for args in [
        &["rule", "add", "fwmark", "1", "lookup", "100"][..],
        &[
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "100",
        ][..],
        &["-6", "rule", "add", "fwmark", "1", "lookup", "100"][..],
        &[
            "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100",
        ][..],
    ] {
        let o = Command::new("ip")
            .args(["-n", netns])
            .args(args)
            .output()
            .map_err(RunError::Ip)?;
        if !o.status.success() {
            return Err(RunError::IpRefused {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}
