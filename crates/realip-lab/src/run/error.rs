//! Why a scenario could not be run (as opposed to a probe that failed its
//! expectations, which is a result).

use std::path::PathBuf;

use crate::k8s::K8sError;
use crate::manifest::ManifestError;
use crate::process::ProcError;
use crate::scenario::HostError;
use crate::topology::{LabError, PlanError, Role};

/// Why a scenario could not be run to the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// kube-proxy without the control plane it watches.
    #[error("--proxy {0} watches the lab's apiserver: run with --api (and the agents watching)")]
    KubeProxyNeedsApi(super::agents::Proxy),
    /// A live scenario in files mode.
    #[error("{0} needs the real control plane (kubectl steps, Deployments or an LB that reads its Service): run it with --api")]
    NeedsApi(String),
    /// The scenario's directory could not be made.
    #[error("{}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The topology was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The namespaces could not be built.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The topology has no such host.
    #[error("no host {0:?}")]
    NoHost(Role),
    /// A probe's host is not one of the topology's.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A file for a component could not be written.
    #[error("{0}")]
    Write(#[source] std::io::Error),
    /// nft could not be started.
    #[error("nft: {0} (apt-get install nftables)")]
    NftMissing(#[source] std::io::Error),
    /// Talking to nft failed.
    #[error("{0}")]
    Nft(#[source] std::io::Error),
    /// nft refused the rules.
    #[error("nft: {stderr}")]
    NftRefused {
        /// What nft said.
        stderr: String,
    },
    /// `ip` could not be run.
    #[error("{0}")]
    Ip(#[source] std::io::Error),
    /// `ip` refused a rule or route.
    #[error("ip {args}: {stderr}")]
    IpRefused {
        /// The arguments after `ip -n NETNS`.
        args: String,
        /// What `ip` said.
        stderr: String,
    },
    /// A component could not be started, or did not get ready.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// A value the scenario names could not be read.
    #[error("{source}{hint}")]
    Placeholder {
        /// What is missing.
        source: ManifestError,
        /// What to try.
        hint: &'static str,
    },
    /// The control plane could not be started or used (`--api`).
    #[error(transparent)]
    Api(#[from] K8sError),
    /// A namespace could not be opened.
    #[error("{}: {source}", path.display())]
    OpenNetns {
        /// The namespace's file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A namespace could not be joined.
    #[error("entering {}: {source}", path.display())]
    EnterNetns {
        /// The namespace's file.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// The thread working in a namespace panicked.
    #[error("the thread in {netns} panicked")]
    Panicked {
        /// The namespace.
        netns: String,
    },
    /// An agent's /metrics could not be read.
    #[error("the agent's /metrics: {0}")]
    Metrics(#[source] std::io::Error),
    /// An agent did not show a settled sync.
    #[error("realip node on node-{node} did not settle within {timeout:?} (its /metrics: {last})")]
    NotSettled {
        /// The node.
        node: usize,
        /// How long it had.
        timeout: std::time::Duration,
        /// What was last seen.
        last: String,
    },
    /// A probe's target is not a socket address.
    #[error("{to:?} is not ADDR:PORT")]
    BadTarget {
        /// The target given.
        to: String,
    },
}
