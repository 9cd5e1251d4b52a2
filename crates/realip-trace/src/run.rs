//! The imperative shell: make the namespaces (or use the node's), program
//! the ruleset, set the trace bit for the one 5-tuple, send the packet,
//! and ask the kernel what happened: the trace events, the rules they
//! name, the pick maps and the conntrack entry.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
    SockaddrIn6,
};
use realip_nft::{ConntrackEvents, Family, Flow, Netlink, RuleInfo, TraceEvent, TraceListener};
use realip_node::model::Model;

use crate::explain::{chain_owners, explain, our_events, Mode, Observed, Report};
use crate::probe::{Probe, Proto};
use crate::scratch::{self, netns_path, Sender};

/// Why a trace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The input cannot be traced (exit 2).
    #[error("{0}")]
    Input(String),
    /// No root, no namespaces or no nf_tables here (exit 2).
    #[error("{0}")]
    Unsupported(String),
    /// The kernel refused or failed a step (exit 1).
    #[error("{0}")]
    Kernel(String),
}

impl TraceError {
    /// The exit code the binary gives it.
    pub fn exit_code(&self) -> u8 {
        match self {
            TraceError::Input(_) | TraceError::Unsupported(_) => 2,
            TraceError::Kernel(_) => 1,
        }
    }
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct Request {
    /// The packet.
    pub probe: Probe,
    /// The node whose ruleset it meets.
    pub node: String,
    /// The objects: the ruleset's source in a scratch namespace; in the
    /// node's namespace, only the names of the Services.
    pub model: Option<Model>,
    /// Where.
    pub mode: Mode,
}

/// How long the kernel gets to send the first trace event, and the quiet
/// spell that ends the trace. It sends them while it handles the packet
/// (microseconds); the margins are for a loaded machine.
const FIRST_EVENT: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_millis(300);
const AT_MOST: Duration = Duration::from_secs(5);

fn kernel(what: &str) -> impl Fn(&dyn std::fmt::Display) -> TraceError + '_ {
    move |e| TraceError::Kernel(format!("{what}: {e}"))
}

/// Run `f` on a thread that has joined namespace `ns`: sockets it opens
/// live there, wherever they are used afterwards.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TraceError> {
    let path = netns_path(ns);
    let name = ns.to_string();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| TraceError::Kernel(format!("opening {}: {e}", path.display())))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| TraceError::Kernel(format!("entering {name}: {e}")))?;
        Ok(f())
    })
    .join()
    .map_err(|_| TraceError::Kernel(format!("a thread in {ns} panicked")))?
}

fn sysctls() -> Result<(), String> {
    for (key, value) in scratch::NODE_SYSCTLS {
        let path = format!("/proc/sys/{key}");
        // A kernel without br_netfilter has no net/bridge: nothing to
        // turn off.
        if key.starts_with("net/bridge/") && !std::path::Path::new(&path).exists() {
            continue;
        }
        std::fs::write(&path, value).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

/// A raw socket of the packet's protocol bound to SRC: the kernel adds
/// the IP header with that source, and sends exactly the one transport
/// segment given (no retransmission, no handshake).
fn raw_socket(probe: &Probe) -> Result<OwnedFd, Errno> {
    let proto = match probe.proto {
        Proto::Tcp => SockProtocol::Tcp,
        Proto::Udp => SockProtocol::Udp,
        Proto::Sctp => SockProtocol::Sctp,
    };
    let src = probe.src.0.ip();
    let af = if src.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(af, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)?;
    match src {
        IpAddr::V4(a) => bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(a, 0)),
        )?,
        IpAddr::V6(a) => bind(
            fd.as_raw_fd(),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(a, 0, 0, 0)),
        )?,
    }
    Ok(fd)
}

fn send(fd: &OwnedFd, probe: &Probe) -> Result<(), TraceError> {
    let bytes = probe.transport_bytes();
    // A raw socket's port field is not a port (IPv6 takes it for the
    // protocol): 0.
    let sent = match probe.dst.0.ip() {
        IpAddr::V4(a) => sendto(
            fd.as_raw_fd(),
            &bytes,
            &SockaddrIn::from(std::net::SocketAddrV4::new(a, 0)),
            MsgFlags::empty(),
        ),
        IpAddr::V6(a) => sendto(
            fd.as_raw_fd(),
            &bytes,
            &SockaddrIn6::from(std::net::SocketAddrV6::new(a, 0, 0, 0)),
            MsgFlags::empty(),
        ),
    };
    match sent {
        Ok(_) => Ok(()),
        // The kernel's answer to the packet (an ICMP error queued on the
        // socket, or a route it has none of) is part of what is traced.
        Err(Errno::ENETUNREACH) | Err(Errno::EHOSTUNREACH) => Err(TraceError::Kernel(format!(
            "sending {probe}: no route to {} from the sender",
            probe.dst.0.ip()
        ))),
        Err(e) => Err(TraceError::Kernel(format!("sending {probe}: {e}"))),
    }
}

fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() {
        Family::Ipv4
    } else {
        Family::Ipv6
    }
}

/// A unique suffix: the process, a counter and the clock.
fn unique() -> String {
    realip_lab::topology::unique_id()
}

/// The sockets a trace reads the kernel through, in the traced namespace.
struct Kernel {
    listener: TraceListener,
    netlink: Netlink,
    conntrack: ConntrackEvents,
}

impl Kernel {
    fn open() -> Result<Kernel, TraceError> {
        let denied = |e: &dyn std::fmt::Display| {
            TraceError::Unsupported(format!(
                "{e}: tracing needs CAP_NET_ADMIN and nf_tables (run as root)"
            ))
        };
        let listener = TraceListener::open().map_err(|e| denied(&e))?;
        let netlink = Netlink::open().map_err(|e| denied(&e))?;
        let conntrack = ConntrackEvents::open().map_err(|e| denied(&e))?;
        Ok(Kernel {
            listener,
            netlink,
            conntrack,
        })
    }

    /// The rules the events name, and the endpoints of the pick maps
    /// those rules index.
    #[allow(clippy::type_complexity)]
    fn read_back(
        &mut self,
        events: &[TraceEvent],
        trace_table: &str,
    ) -> Result<
        (
            BTreeMap<(String, String, u64), RuleInfo>,
            BTreeMap<(String, String), Vec<SocketAddr>>,
        ),
        TraceError,
    > {
        let chains: BTreeSet<(u32, String, String)> = events
            .iter()
            .filter(|e| e.rule.is_some() && e.table != trace_table)
            .map(|e| (e.nfproto, e.table.clone(), e.chain.clone()))
            .collect();
        let mut rules = BTreeMap::new();
        let mut picks = BTreeMap::new();
        for (nfproto, table, chain) in chains {
            let fam = if nfproto == 10 {
                Family::Ipv6
            } else {
                Family::Ipv4
            };
            let got = self
                .netlink
                .chain_rules(fam, &table, &chain)
                .map_err(|e| kernel("reading back the rules")(&e))?;
            for r in got {
                if let Some((map, modulus)) = r.pick() {
                    let elems = self
                        .netlink
                        .set_elements(fam, &table, map)
                        .map_err(|e| kernel("reading the pick map")(&e))?;
                    let mut eps: Vec<(u32, SocketAddr)> = elems
                        .iter()
                        .filter_map(|el| {
                            let k = u32::from_ne_bytes(el.key.get(..4)?.try_into().ok()?);
                            let v = el.value.as_ref()?;
                            let (ip, port_at) = match v.len() {
                                8 => (IpAddr::from(<[u8; 4]>::try_from(&v[..4]).ok()?), 4),
                                20 => (IpAddr::from(<[u8; 16]>::try_from(&v[..16]).ok()?), 16),
                                _ => return None,
                            };
                            let port = u16::from_be_bytes([v[port_at], v[port_at + 1]]);
                            (k < modulus).then_some((k, SocketAddr::new(ip, port)))
                        })
                        .collect();
                    eps.sort();
                    picks.insert(
                        (table.clone(), map.to_string()),
                        eps.into_iter().map(|(_, e)| e).collect(),
                    );
                }
                rules.insert((table.clone(), chain.clone(), r.handle), r);
            }
        }
        Ok((rules, picks))
    }

    /// The packet's flow: from the table, or else from the event sent
    /// when it was confirmed (a flow killed at once, as by a reset
    /// answering the SYN, is in no dump).
    fn flow(&mut self, probe: &Probe) -> Result<Option<Flow>, TraceError> {
        let ours = |f: &Flow| {
            f.proto == probe.proto.number()
                && f.orig_src == probe.src.0
                && f.orig_dst == probe.dst.0
        };
        let flows = self
            .netlink
            .conntrack_flows(family_of(probe.src.0.ip()))
            .map_err(|e| kernel("reading conntrack")(&e))?;
        if let Some(f) = flows.into_iter().find(ours) {
            return Ok(Some(f));
        }
        let events = self
            .conntrack
            .drain()
            .map_err(|e| kernel("reading conntrack events")(&e))?;
        Ok(events.into_iter().find(ours))
    }
}

/// Trace one packet.
pub fn trace(req: &Request) -> Result<Report, TraceError> {
    match req.mode {
        Mode::Scratch => trace_scratch(req),
        Mode::NodeNamespace => trace_here(req),
    }
}

fn observe(
    k: &mut Kernel,
    req: &Request,
    trace_table: &str,
    sender: OwnedFd,
) -> Result<Observed, TraceError> {
    let probe = req.probe;
    k.netlink
        .add_trace_table(trace_table, &probe.five_tuple())
        .map_err(|e| kernel("adding the trace table")(&e))?;
    send(&sender, &probe)?;
    let all = k
        .listener
        .collect(FIRST_EVENT, QUIET, AT_MOST)
        .map_err(|e| kernel("reading trace events")(&e))?;
    let events = our_events(&all, trace_table, &probe);
    let (rules, picks) = k.read_back(&events, trace_table)?;
    let flow = k.flow(&probe)?;
    let owners = req.model.as_ref().map(chain_owners).unwrap_or_default();
    Ok(Observed {
        probe,
        node: req.node.clone(),
        mode: req.mode,
        trace_table: trace_table.to_string(),
        events,
        rules,
        picks,
        flow,
        owners,
    })
}

fn trace_scratch(req: &Request) -> Result<Report, TraceError> {
    let Some(model) = &req.model else {
        return Err(TraceError::Input(
            "no objects: give --objects PATH, --kubeconfig FILE or --master URL (the ruleset is \
             planned from them), or --in-node-namespace to trace the live ruleset"
                .into(),
        ));
    };
    let Some(node) = model.nodes.get(&req.node) else {
        return Err(TraceError::Input(format!(
            "node {:?} is not among the objects (nodes there: {}); give its Node object or \
             another --node",
            req.node,
            model.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let rulesets =
        realip_node::plan::plan(model, &req.node).map_err(|e| TraceError::Input(e.to_string()))?;
    let src = req.probe.src.0.ip();
    let sender = scratch::sender_for(node, src).map_err(|e| TraceError::Input(e.to_string()))?;
    realip_lab::topology::check_support().map_err(|e| TraceError::Unsupported(e.to_string()))?;
    let id = unique();
    let sc = scratch::plan(&id, node, src, sender);
    // Dropped on every return below: the namespaces go with it.
    let lab = realip_lab::topology::Lab::build(sc.plan.clone())
        .map_err(|e| TraceError::Kernel(format!("building the scratch namespaces: {e}")))?;
    in_netns(&sc.node_ns, sysctls)?.map_err(|e| kernel("setting the node's sysctls")(&e))?;
    let mut syncer = in_netns(&sc.node_ns, realip_node::sync::Syncer::new)?.map_err(|e| {
        TraceError::Unsupported(format!("{e} (programming nf_tables needs CAP_NET_ADMIN)"))
    })?;
    syncer
        .sync(rulesets)
        .map_err(|e| kernel("programming the node's ruleset")(&e))?;
    let mut k = in_netns(&sc.node_ns, Kernel::open)??;
    let probe = req.probe;
    let sender_ns = match sender {
        Sender::Node => sc.node_ns.clone(),
        Sender::Pod { .. } | Sender::Remote { .. } => {
            sc.sender_ns.clone().unwrap_or_else(|| sc.node_ns.clone())
        }
    };
    let fd = in_netns(&sender_ns, move || raw_socket(&probe))?
        .map_err(|e| kernel(&format!("opening a raw socket on {}", probe.src.0.ip()))(&e))?;
    let obs = observe(&mut k, req, &format!("realip-trace-{id}"), fd);
    drop(k);
    drop(syncer);
    drop(lab);
    Ok(explain(&obs?))
}

fn trace_here(req: &Request) -> Result<Report, TraceError> {
    let probe = req.probe;
    let mut k = Kernel::open()?;
    let fd = raw_socket(&probe).map_err(|e| match e {
        Errno::EADDRNOTAVAIL => TraceError::Input(format!(
            "--in-node-namespace sends the packet from this namespace (through the output \
             hook), so SRC must be one of its addresses, and {} is not; to see a packet from a \
             remote client or a pod cross prerouting, leave out --in-node-namespace (a scratch \
             namespace replays it)",
            probe.src.0.ip()
        )),
        Errno::EPERM | Errno::EACCES => TraceError::Unsupported(format!(
            "opening a raw socket: {e} (needs CAP_NET_RAW: run as root)"
        )),
        e => TraceError::Kernel(format!("opening a raw socket on {}: {e}", probe.src.0.ip())),
    })?;
    let table = format!("realip-trace-{}", unique());
    let obs = observe(&mut k, req, &table, fd)?;
    // The packet's conntrack entry is ours: leave the node's table as it
    // was. The trace table goes when the socket closes.
    if let Some(f) = &obs.flow {
        let _ = k.netlink.conntrack_delete(f);
    }
    drop(k);
    Ok(explain(&obs))
}
