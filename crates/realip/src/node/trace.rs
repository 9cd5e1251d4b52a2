//! `realip node trace`: what this node's kernel does to one packet. The
//! work is realip_trace's; here are the arguments, where the objects come
//! from, the output and the exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use realip_kube::{ApiAccess, ApiSource, Selection};
use realip_node::agent::{FileSource, ObjectSource};
use realip_node::model::Model;
use realip_trace::{probe, Mode, Probe, Request};

#[derive(Debug, clap::Args)]
#[command(
    about = "Trace one packet through this node's nf_tables ruleset: verdict, DNAT, masquerade, and why",
    long_about = "Send one packet (a TCP SYN, a UDP datagram or an SCTP INIT) from SRC to DST:PORT and \
report what the kernel did to it: accepted, DNATed to which endpoint (with every endpoint a random \
pick could choose, and the chance of each, read from the pick map in the kernel), masqueraded or \
not (and which rule marked it, and what source the pod sees), dropped or rejected (and by which \
rule of which chain), and every chain it crossed in order. Everything comes from the kernel: \
nftables trace events (a scratch table sets `meta nftrace` for exactly this 5-tuple, at priority \
-350, and the events are read over netlink), the rules and maps they name, read back, and the \
packet's conntrack entry (the NAT it really got).\n\n\
By default the packet is replayed in scratch network namespaces (realip-trace-ID-node and -sender): \
one holds the ruleset `realip node` programs for --node and the objects, with the Node's addresses \
on eth0 and its pod CIDRs on cbr0; the packet is sent from a second one, so it arrives on an \
interface and crosses prerouting as a remote client's does (SRC in the node's pod CIDR: it arrives \
on cbr0, as a pod's). When SRC is one of the node's own addresses it is sent from the node's \
namespace and crosses output. The namespaces are removed afterwards, also on error and on Ctrl-C.\n\n\
With --in-node-namespace the packet meets the live ruleset of the namespace this runs in; it is \
sent from there (SRC must be one of its addresses), so it crosses output, and it really leaves \
towards the endpoint the kernel picks. The trace table belongs to the netlink socket that made it \
(the kernel removes it when the process ends, even when killed) and the packet's conntrack entry is \
deleted after it is read. The objects are optional there: they only name the Services.\n\n\
Needs root (CAP_NET_ADMIN, CAP_NET_RAW, and creating namespaces). Exit 0 with the report, 2 for \
input that cannot be traced or a host that cannot trace (not root, no namespaces), 1 when the \
kernel fails a step."
)]
pub struct TraceArgs {
    /// Where the packet comes from: IP, or IP:PORT to choose the source port (default: a fresh
    /// ephemeral port, so the packet starts a new connection).
    #[arg(value_name = "SRC")]
    src: String,
    /// Where it goes: IP:PORT (a ClusterIP, a node address and node port, an external or LB IP).
    #[arg(value_name = "DST:PORT")]
    dst: String,
    /// The transport protocol: tcp, udp or sctp.
    #[arg(long, default_value = "tcp", value_name = "PROTO")]
    proto: String,
    /// The node whose ruleset the packet meets (its Node object must be among the objects).
    /// Default: NODE_NAME.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// A YAML/JSON file or a directory of them (as `kubectl get -o yaml` prints them).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["kubeconfig", "master"])]
    objects: Option<PathBuf>,
    /// Read the objects from the API server of this kubeconfig's current context.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The API server's URL (replaces the kubeconfig's server; alone, no credentials).
    #[arg(long, value_name = "URL")]
    master: Option<String>,
    /// Trace against the live ruleset of this namespace instead of a scratch one.
    #[arg(long)]
    in_node_namespace: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn fail(code: u8, msg: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("realip node trace: {msg}");
    ExitCode::from(code)
}

/// How long the API server's lists may take to load.
const LISTS: Duration = Duration::from_secs(30);

fn from_api(access: &ApiAccess, node: &str) -> Result<Model, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let conn = realip_kube::connect(access)
            .await
            .map_err(|e| e.to_string())?;
        let source = ApiSource::start(&conn, node, &Selection::unclaimed())
            .map_err(|e| format!("--node: {e}"))?;
        tokio::select! {
            () = source.wait_ready() => {}
            () = tokio::time::sleep(LISTS) => {
                return Err(format!(
                    "the lists from {} did not load within {LISTS:?} (the warnings above say why)",
                    conn.server
                ));
            }
        }
        let (model, skipped) = source.load().map_err(|e| e.to_string())?;
        for s in skipped {
            eprintln!("realip node trace: {s}");
        }
        Ok(model)
    })
}

/// Run `realip node trace`.
pub fn run(args: TraceArgs) -> ExitCode {
    let proto: probe::Proto = match args.proto.parse() {
        Ok(p) => p,
        Err(e) => return fail(2, &e),
    };
    let parsed = probe::parse_source(&args.src)
        .and_then(|src| Ok((src, probe::parse_destination(&args.dst)?)))
        .and_then(|(src, dst)| Probe::new(proto, src, dst));
    let probe = match parsed {
        Ok(p) => p,
        Err(e) => return fail(2, &e),
    };
    let node = args
        .node
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()));
    let mode = if args.in_node_namespace {
        Mode::NodeNamespace
    } else {
        Mode::Scratch
    };
    let node = match (node, mode) {
        (Some(n), _) => n,
        (None, Mode::NodeNamespace) => String::from("this node"),
        (None, Mode::Scratch) => {
            return fail(
                2,
                &"--node NAME is required (or NODE_NAME in the environment): the ruleset is \
                  planned for one node",
            )
        }
    };
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let model = if let Some(path) = &args.objects {
        match FileSource::new(path).load() {
            Ok((m, skipped)) => {
                for s in skipped {
                    eprintln!("realip node trace: {s}");
                }
                Some(m)
            }
            Err(e) => return fail(2, &e),
        }
    } else if let Some(access) =
        ApiAccess::choose(args.kubeconfig.clone(), args.master.clone(), in_cluster)
    {
        match from_api(&access, &node) {
            Ok(m) => Some(m),
            Err(e) => return fail(2, &e),
        }
    } else {
        None
    };
    let report = match realip_trace::trace(&Request {
        probe,
        node,
        model,
        mode,
    }) {
        Ok(r) => r,
        Err(e) => return fail(e.exit_code(), &e),
    };
    let out = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => return fail(1, &e),
        }
    } else {
        realip_trace::render::text(&report)
    };
    use std::io::Write;
    let _ = std::io::stdout().write_all(out.as_bytes());
    ExitCode::SUCCESS
}
