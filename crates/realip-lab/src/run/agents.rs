//! How the node agents get their objects on the control plane, and how
//! the lab knows they have programmed the final state.
//!
//! Phase 1 (`files`): the lab copies the apiserver's objects into a file
//! per node before starting the agents; their first sync, which READY=1
//! follows, is of that file. Phase 2 (`watch`): each agent watches the
//! apiserver over the fabric with a kubeconfig of its own (user
//! system:kube-proxy). Its initial lists are consistent reads (kube-rs's
//! default `ListSemantic::MostRecent`: no resourceVersion, so not from a
//! possibly older watch cache), made after the lab saw the final slices,
//! and it syncs first once all three lists have loaded; READY=1 after that
//! sync therefore means the final state, or a newer one, is in the
//! kernel. The lab then also waits until the agent's /metrics shows no
//! change queued after its last sync, so a probe never races a late event.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::RunError;
use super::netns::inside;

/// Where the agents serve /metrics: their default, the node namespace's
/// own loopback.
pub(super) const METRICS: &str = "127.0.0.1:10249";

/// How long an agent may take to show a settled sync.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The node agent in every node namespace (`--proxy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Proxy {
    /// `realip node`.
    #[default]
    Realip,
    /// The real kube-proxy, built by scripts/k8s, in this mode; it
    /// watches the lab's apiserver as user system:kube-proxy.
    KubeProxy(KubeProxyMode),
}

/// kube-proxy's `--proxy-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeProxyMode {
    /// nftables (the `nft` tool from Debian's nftables).
    Nftables,
    /// iptables (`iptables-restore` from Debian's iptables).
    Iptables,
}

impl KubeProxyMode {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            KubeProxyMode::Nftables => "nftables",
            KubeProxyMode::Iptables => "iptables",
        }
    }
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proxy::Realip => f.write_str("realip"),
            Proxy::KubeProxy(m) => write!(f, "kube-proxy:{}", m.as_str()),
        }
    }
}

impl std::str::FromStr for Proxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Proxy, String> {
        match s {
            "realip" => Ok(Proxy::Realip),
            "kube-proxy:nftables" => Ok(Proxy::KubeProxy(KubeProxyMode::Nftables)),
            "kube-proxy:iptables" => Ok(Proxy::KubeProxy(KubeProxyMode::Iptables)),
            other => Err(format!(
                "{other:?} is not realip, kube-proxy:nftables or kube-proxy:iptables"
            )),
        }
    }
}

/// How the agents get the objects with `--api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentObjects {
    /// They watch the apiserver (`realip node --kubeconfig`).
    Watch,
    /// The lab copies the objects into files they poll.
    Files,
}

impl AgentObjects {
    /// `Watch` when this realip's `node` has `--kubeconfig`, else `Files`.
    pub fn detect(exe: &Path) -> AgentObjects {
        let help = std::process::Command::new(exe)
            .args(["node", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if help.contains("--kubeconfig") {
            AgentObjects::Watch
        } else {
            AgentObjects::Files
        }
    }
}

/// A kube-proxy metric's value in a /metrics text: the sample without
/// labels (realip node's), else the IPv4 family's (kube-proxy's own,
/// `NAME{ip_family="IPv4"}`).
fn metric(text: &str, name: &str) -> Option<f64> {
    let ipv4 = format!("{name}{{ip_family=\"IPv4\"}}");
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name || n == ipv4).then(|| v.trim().parse().ok())?
    })
}

/// Whether the agent has synced, with nothing queued since its last sync
/// (kube-proxy's own names for the two times).
pub(super) fn settled(metrics: &str) -> bool {
    let synced = metric(metrics, "kubeproxy_sync_proxy_rules_last_timestamp_seconds");
    let queued = metric(
        metrics,
        "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
    );
    matches!((synced, queued), (Some(s), Some(q)) if s > 0.0 && s >= q)
}

/// `GET /metrics` from inside `netns`.
fn get_metrics(netns: &str) -> Result<String, RunError> {
    inside(netns, || -> std::io::Result<String> {
        let addr: SocketAddr = METRICS
            .parse()
            .map_err(|_| std::io::Error::other("metrics address"))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n")?;
        let mut out = Vec::new();
        s.take(1 << 20).read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    })?
    .map_err(RunError::Metrics)
}

/// Whether kube-proxy has no change recorded that no sync has taken yet
/// (its pending gauges), and how many syncs it has finished.
fn kube_proxy_quiet(metrics: &str) -> Option<f64> {
    let pending = metric(
        metrics,
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
    )? + metric(
        metrics,
        "kubeproxy_sync_proxy_rules_service_changes_pending",
    )?;
    let syncs = metric(metrics, "kubeproxy_sync_proxy_rules_duration_seconds_count")?;
    (pending == 0.0 && settled(metrics)).then_some(syncs)
}

/// How long kube-proxy must stay quiet: more than its min-sync-period
/// (1 s), so a change it took just before the first look has either
/// synced or shows as pending by the second.
const QUIET: Duration = Duration::from_millis(1200);

/// Wait until node N's agent (in `netns`) shows a settled sync.
///
/// realip node records a change as queued from the loop that syncs, after
/// the sync in progress, so "synced at or after the last queued change"
/// is exact. kube-proxy records it from its informers' handlers, at any
/// time, and stamps a sync when it ends: a change that came during a sync
/// looks synced. So for kube-proxy (`quiet`) the lab also wants nothing
/// pending and no sync finished across [`QUIET`].
pub(super) fn wait_settled(netns: &str, n: usize, quiet: bool) -> Result<(), RunError> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut first: Option<f64> = None;
    loop {
        let last = match get_metrics(netns) {
            Ok(text) if !quiet && settled(&text) => return Ok(()),
            Ok(text) if quiet => match (kube_proxy_quiet(&text), first) {
                (Some(syncs), Some(before)) if syncs == before => return Ok(()),
                (Some(syncs), _) => {
                    first = Some(syncs);
                    if Instant::now() + QUIET < deadline {
                        std::thread::sleep(QUIET);
                        continue;
                    }
                    "it kept syncing".to_string()
                }
                (None, _) => {
                    first = None;
                    "a change is pending".to_string()
                }
            },
            Ok(_) => "a change is queued".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(RunError::NotSettled {
                node: n,
                timeout: SETTLE_TIMEOUT,
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_once_synced_after_the_last_queued_change() {
        let text = |synced: &str, queued: &str| {
            format!(
                "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] x\n\
                 kubeproxy_sync_proxy_rules_last_timestamp_seconds {synced}\n\
                 kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds {queued}\n"
            )
        };
        assert!(settled(&text("1700000001.5", "1700000001.2")));
        assert!(settled(&text("1700000001.5", "0")));
        assert!(!settled(&text("0", "0")), "never synced");
        assert!(
            !settled(&text("1700000001.5", "1700000002")),
            "queued after"
        );
        assert!(!settled("HTTP/1.0 200 OK\r\n\r\nnothing"));
        // kube-proxy's, per IP family.
        let kube_proxy = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family=\"IPv4\"} 1.79619559405e+09\n\
             kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1.79619559419e+09\n";
        assert!(settled(kube_proxy));
        assert!(!settled(&kube_proxy.replace("19e+09", "01e+09")));
    }
}
