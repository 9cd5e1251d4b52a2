//! The lab as scheduler and kubelet for the Pods the controllers make (a
//! Deployment's), and the wait after a live scenario's step.
//!
//! Each round reads the Pods and acts as the two would: a pending Pod is
//! bound to a free slot ([`pods::place`]), labelled with it, its process
//! started in the slot's namespace and, once it says READY=1, its status
//! written Running and Ready. A Pod being deleted keeps running through
//! its grace period (a kubelet runs preStop and waits for the container
//! to exit; the lab's whoami would exit at once, so the lab holds it the
//! whole period, as a preStop sleep does), then its process is stopped
//! and the Pod deleted for good. A Pod that vanished has its process
//! stopped. Pods the lab made itself (the scenario's slices list them)
//! are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::k8s::kubectl::Kubectl;
use crate::k8s::objects::{running_status, POD_LABEL};
use crate::k8s::pods::{binding, lagging, place, pod_views, unschedulable};
use crate::k8s::K8sError;
use crate::process::Proc;
use crate::topology::Role;

use super::super::agents::{wait_settled, AgentObjects, Proxy};
use super::super::error::RunError;
use super::{Cluster, AGENT_POLL_PERIOD};

/// How long a step's change may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the cluster is read while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(200);

/// After the apiserver says everything settled: time for the agents'
/// watches to deliver the last events, so "synced after the last queued
/// change" means after those.
const WATCH_DELIVERY: Duration = Duration::from_millis(500);

/// A Pod the lab placed and runs.
struct Placed {
    uid: String,
    namespace: String,
    name: String,
    /// Its process; `None` once stopped.
    proc: Option<Proc>,
    /// When the lab first saw it being deleted.
    deleting_since: Option<Instant>,
}

/// The Pods the lab places and runs, slot by slot.
pub(super) struct Kubelet {
    /// Slots for the controllers' Pods.
    pub(super) free: BTreeSet<(usize, usize)>,
    /// realip itself and the run's directory, to start pods.
    pub(super) exe: PathBuf,
    pub(super) dir: PathBuf,
    placed: BTreeMap<(usize, usize), Placed>,
}

impl Kubelet {
    /// For a run of realip `exe` with its files in `dir`; no slot yet.
    pub(super) fn new(exe: &std::path::Path, dir: &std::path::Path) -> Kubelet {
        Kubelet {
            free: BTreeSet::new(),
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            placed: BTreeMap::new(),
        }
    }
}

fn kubectl_of(c: &Cluster) -> Option<&Kubectl> {
    c.api.as_ref().map(|a| a.control.kubectl())
}

impl Cluster {
    /// One round as scheduler and kubelet on the Pods as they are now;
    /// whether anything was done.
    pub(super) fn reconcile(&mut self) -> Result<bool, RunError> {
        if self.kubelet.free.is_empty() {
            return Ok(false);
        }
        let Some(kubectl) = kubectl_of(self) else {
            return Ok(false);
        };
        let pods = kubectl.get_json(&["pods", "-A"])?;
        self.reconcile_pods(&pods)
    }

    /// One round as scheduler and kubelet on `pods` (a Pod list).
    fn reconcile_pods(&mut self, pods: &Value) -> Result<bool, RunError> {
        if self.kubelet.free.is_empty() {
            return Ok(false);
        }
        let Some(kubectl) = kubectl_of(self).cloned() else {
            return Ok(false);
        };
        let views = pod_views(pods);
        let mut changed = false;
        // Gone from the apiserver: stop what ran.
        let live: BTreeSet<&str> = views.iter().map(|v| v.uid.as_str()).collect();
        let gone: Vec<(usize, usize)> = self
            .kubelet
            .placed
            .iter()
            .filter(|(_, p)| !live.contains(p.uid.as_str()))
            .map(|(slot, _)| *slot)
            .collect();
        for slot in gone {
            if let Some(p) = self.kubelet.placed.remove(&slot) {
                tracing::info!(pod = %format!("{}/{}", p.namespace, p.name), ?slot, "Pod deleted; its process stopped");
            }
            changed = true;
        }
        // Being deleted: hold through the grace period, then finish.
        for v in views.iter().filter(|v| v.deleting.is_some()) {
            let grace = Duration::from_secs(v.deleting.unwrap_or(0));
            let Some((&slot, p)) = self.kubelet.placed.iter_mut().find(|(_, p)| p.uid == v.uid)
            else {
                continue;
            };
            let since = *p.deleting_since.get_or_insert_with(|| {
                tracing::info!(pod = %format!("{}/{}", v.namespace, v.name), ?grace, "Pod terminating; it keeps serving through its grace period");
                Instant::now()
            });
            if since.elapsed() >= grace {
                p.proc = None;
                let gone = kubectl.run(
                    &[
                        "delete",
                        "pod",
                        &v.name,
                        "-n",
                        &v.namespace,
                        "--grace-period=0",
                        "--force",
                        "--wait=false",
                        "--ignore-not-found",
                    ],
                    None,
                );
                if let Err(e) = gone {
                    tracing::warn!(error = %e, "finishing a Pod's deletion");
                }
                self.kubelet.placed.remove(&slot);
                changed = true;
            }
        }
        // Pending: place, bind, start, mark Running and Ready.
        for v in views
            .iter()
            .filter(|v| v.node.is_none() && v.deleting.is_none())
        {
            let taken: BTreeSet<(usize, usize)> = self.kubelet.placed.keys().copied().collect();
            let Some((n, j)) = place(&self.kubelet.free, &taken) else {
                if !v.unschedulable {
                    kubectl.patch_status("pod", &v.name, Some(&v.namespace), &unschedulable())?;
                    changed = true;
                }
                continue;
            };
            let node = format!("node-{n}");
            let path = format!("/api/v1/namespaces/{}/pods/{}/binding", v.namespace, v.name);
            let body = binding(&v.name, &node).to_string();
            kubectl.run(
                &["create", "--raw", &path, "-f", "-"],
                Some(body.as_bytes()),
            )?;
            kubectl.run(
                &[
                    "label",
                    "pod",
                    &v.name,
                    "-n",
                    &v.namespace,
                    "--overwrite",
                    &format!("{POD_LABEL}=pod-{n}-{j}"),
                ],
                None,
            )?;
            let ns = self.netns(&Role::Pod(n, j))?;
            let what = format!("pod/{n}/{j} ({}/{})", v.namespace, v.name);
            let mut proc = Proc::start(
                &ns,
                &self.kubelet.dir,
                &self.kubelet.exe,
                &self.scenario.pod_program(n, j),
                &what,
            )?;
            proc.wait_ready()?;
            let status = running_status(n, j, &v.container, true);
            kubectl.patch_status("pod", &v.name, Some(&v.namespace), &status)?;
            tracing::info!(pod = %format!("{}/{}", v.namespace, v.name), %node, slot = %format!("pod/{n}/{j}"), "Pod placed and running");
            self.kubelet.placed.insert(
                (n, j),
                Placed {
                    uid: v.uid.clone(),
                    namespace: v.namespace.clone(),
                    name: v.name.clone(),
                    proc: Some(proc),
                    deleting_since: None,
                },
            );
            changed = true;
        }
        Ok(changed)
    }

    /// The objects the settle check reads, in one list (one read, so the
    /// kubelet's round and the check see the same moment): Services,
    /// Pods, EndpointSlices and Deployments, each as its own list.
    fn snapshot(&self) -> Result<Option<[Value; 4]>, RunError> {
        let Some(kubectl) = kubectl_of(self) else {
            return Ok(None);
        };
        let all = kubectl.get_json(&[
            "services,pods,endpointslices.discovery.k8s.io,deployments.apps",
            "-A",
        ])?;
        let of = |kind: &str| {
            let items: Vec<Value> = all["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| o["kind"] == kind)
                .cloned()
                .collect();
            serde_json::json!({ "items": items })
        };
        Ok(Some([
            of("Service"),
            of("Pod"),
            of("EndpointSlice"),
            of("Deployment"),
        ]))
    }

    /// Wait until the change `what` made has settled: the Pods placed,
    /// started or finished, the slices what the Pods imply, the
    /// Deployments at their replicas.
    pub(super) fn settle(&mut self, what: &str) -> Result<(), RunError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if let Some(api) = &mut self.api {
                api.control.check()?;
            }
            let Some([services, pods, slices, deployments]) = self.snapshot()? else {
                return Ok(());
            };
            let changed = self.reconcile_pods(&pods)?;
            let lag = if changed {
                Vec::new()
            } else {
                lagging(&services, &pods, &slices, &deployments)
            };
            if !changed && lag.is_empty() {
                return self.wait_watch_cache(deadline);
            }
            if Instant::now() >= deadline {
                return Err(K8sError::Settle {
                    step: what.to_string(),
                    timeout: SETTLE_TIMEOUT,
                    differences: if lag.is_empty() {
                        "the lab was still placing or finishing Pods".into()
                    } else {
                        lag.join("; ")
                    },
                }
                .into());
            }
            std::thread::sleep(SETTLE_POLL);
        }
    }

    /// Wait until the apiserver's watch cache holds what etcd holds now.
    /// kube-proxy's informers list from that cache (resourceVersion=0)
    /// and are sent its events; a cache a few writes behind would give an
    /// agent started now a stale first state, and one running the last
    /// events late. (realip node lists with a consistent read.) Caught up
    /// means: for Services and EndpointSlices, the cache lists the very
    /// objects, at the very versions, that a consistent read lists (a
    /// deletion it has not seen shows as an object too many). Comparing
    /// the lists' revisions instead would wait for a write to another
    /// resource that this cache is never sent.
    pub(super) fn wait_watch_cache(&self, deadline: Instant) -> Result<(), RunError> {
        let Some(kubectl) = kubectl_of(self) else {
            return Ok(());
        };
        let versions = |path: &str| -> Result<BTreeSet<(String, String)>, RunError> {
            let v: Value = serde_json::from_str(&kubectl.run(&["get", "--raw", path], None)?)
                .map_err(|e| K8sError::KubectlJson {
                    args: format!("get --raw {path}"),
                    reason: e.to_string(),
                })?;
            Ok(v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| {
                    let m = &o["metadata"];
                    let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
                    (s("uid"), s("resourceVersion"))
                })
                .collect())
        };
        let paths = [
            "/api/v1/services",
            "/apis/discovery.k8s.io/v1/endpointslices",
        ];
        loop {
            // Both read each round: a write in between (a controller's
            // late update) must not leave the cache "ahead" for good.
            let now = paths
                .iter()
                .map(|p| versions(p))
                .collect::<Result<Vec<_>, RunError>>()?;
            let cached = paths
                .iter()
                .map(|p| versions(&format!("{p}?resourceVersion=0")))
                .collect::<Result<Vec<_>, RunError>>()?;
            if cached == now {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let behind: Vec<&str> = paths
                    .iter()
                    .zip(cached.iter().zip(&now))
                    .filter(|(_, (c, n))| c != n)
                    .map(|(p, _)| *p)
                    .collect();
                return Err(K8sError::Settle {
                    step: "the watch cache".into(),
                    timeout: SETTLE_TIMEOUT,
                    differences: format!(
                        "it does not list what etcd holds for {}",
                        behind.join(", ")
                    ),
                }
                .into());
            }
            std::thread::sleep(SETTLE_POLL);
        }
    }

    /// Once the apiserver's objects have settled: wait until every node
    /// agent has them in the kernel. Watching agents get the last events
    /// (given [`WATCH_DELIVERY`]) and must show a sync after the last
    /// change queued; agents reading files get them rewritten and are
    /// given two polls first.
    pub(super) fn wait_agents(&mut self) -> Result<(), RunError> {
        let Some(api) = &mut self.api else {
            return Ok(());
        };
        match api.agents {
            AgentObjects::Watch => std::thread::sleep(WATCH_DELIVERY),
            AgentObjects::Files => {
                api.mirror.sync(api.control.kubectl())?;
                std::thread::sleep(2 * AGENT_POLL_PERIOD);
            }
        }
        for n in 1..=self.scenario.pods.len() {
            wait_settled(&self.netns(&Role::Node(n))?, n, self.proxy != Proxy::Realip)?;
        }
        Ok(())
    }
}
