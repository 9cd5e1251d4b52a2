//! `realip lb`: the seeds' cloud load balancer. So far the L4 TCP role.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use realip_lb::health::Check;
use realip_lb::pool::{Checks, Pool};
use realip_lb::tcp::{ClientIp, TcpConfig, TcpStats};
use realip_lb::udp::UdpConfig;
use realip_lb::{Backend, Method};

#[derive(Debug, clap::Args)]
#[command(
    about = "The cloud load balancer in front of the nodes (so far: L4 TCP and UDP)",
    long_about = "The seeds' cloud load balancer, L4 TCP and UDP so far: accept on --listen, pick a backend by \
--schedule, tell it who the client is by --client-ip, copy both ways. none: the backend sees this \
process's address, the seeds' problem; proxy-v1 / proxy-v2: a PROXY protocol header with the client's \
address goes first (haproxy's send-proxy / send-proxy-v2). Schedules: round-robin, \
weighted-round-robin, least-connections, source-hash (the same client, the same backend; ULB's \
vserver-method source), maglev (consistent: a backend going away moves few other flows). Backends \
take ADDR:PORT or ADDR:PORT=WEIGHT. --health checks each backend every --health-interval: --fall \
failures in a row take it out, --rise passes bring it back; connections in flight keep their backend. \
SIGTERM stops accepting and lets open connections finish within --grace. \
--mode udp keeps a flow per client address (its own socket to its backend, forgotten after \
--idle-timeout without a reply, at most --max-flows); with proxy-v2 every datagram carries the header. \
The HTTP mode and the config file come next."
)]
pub struct Args {
    /// What to balance: tcp or udp (http comes next).
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
    mode: String,
    /// Where to listen.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A backend, ADDR:PORT or ADDR:PORT=WEIGHT (repeatable).
    #[arg(long = "backend", value_name = "ADDR:PORT[=WEIGHT]", required = true, value_parser = parse_backend)]
    backends: Vec<Backend>,
    /// How the backend learns the client: none, proxy-v1 or proxy-v2.
    #[arg(long = "client-ip", default_value = "none")]
    client_ip: ClientIp,
    /// round-robin, weighted-round-robin, least-connections, source-hash or maglev.
    #[arg(long, default_value = "round-robin")]
    schedule: Method,
    /// Health check per backend: tcp (connect) or http:/PATH (2xx passes;
    /// a kube-proxy answer's localEndpoints or X-Load-Balancing-Endpoint-Weight
    /// becomes the backend's weight). Without it every backend is up.
    #[arg(long, value_name = "tcp|http:/PATH")]
    health: Option<Check>,
    /// Check this port of each backend's address instead of the backend's
    /// own (a node's healthCheckNodePort).
    #[arg(long = "health-port", value_name = "PORT")]
    health_port: Option<u16>,
    /// Time between health-check rounds.
    #[arg(long = "health-interval", default_value = "2s", value_parser = crate::parse_duration)]
    health_interval: Duration,
    /// Longest a health check may take.
    #[arg(long = "health-timeout", default_value = "1s", value_parser = crate::parse_duration)]
    health_timeout: Duration,
    /// Passes in a row that bring a backend back.
    #[arg(long, default_value = "2")]
    rise: u32,
    /// Failures in a row that take a backend out.
    #[arg(long, default_value = "3")]
    fall: u32,
    /// TCP: expect a PROXY header (off, v1, v2, any) from an LB in front
    /// of this one and pass its client on (relay). Only --trusted peers
    /// may send one; a connection without a valid header is closed.
    #[arg(long = "accept-proxy", default_value = "off", value_name = "MODE")]
    accept_proxy: realip_net::ProxyMode,
    /// Who may send a PROXY header: CIDRs or presets (loopback, private,
    /// any). Nothing is trusted by default.
    #[arg(long, value_name = "CIDR|PRESET")]
    trusted: Vec<String>,
    /// On SIGTERM: stop accepting, let open TCP connections finish for at
    /// most this long, then exit.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    grace: Duration,
    /// Serve Prometheus metrics (GET /metrics) here (TCP mode).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// UDP: most flows at once.
    #[arg(long = "max-flows", default_value = "65536")]
    max_flows: usize,
    /// Longest wait for a backend to accept.
    #[arg(long = "connect-timeout", default_value = "3s", value_parser = crate::parse_duration)]
    connect_timeout: Duration,
    /// Close a connection with no traffic either way for this long.
    #[arg(long = "idle-timeout", default_value = "300s", value_parser = crate::parse_duration)]
    idle_timeout: Duration,
    /// Log format.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    let (addr, weight) = match s.split_once('=') {
        Some((a, w)) => (
            a,
            w.parse::<u32>()
                .map_err(|_| format!("{w:?} is not a weight (a whole number)"))?,
        ),
        None => (s, 1),
    };
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not ADDR:PORT"))?;
    Ok(Backend { addr, weight })
}

/// Run `realip lb`.
pub fn run(args: Args) -> ExitCode {
    crate::logging::init(&args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realip lb: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trusted = match realip_core::TrustSet::parse(args.trusted.iter().map(String::as_str)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("realip lb: --trusted: {e}");
            return ExitCode::from(2);
        }
    };
    if args.mode == "udp" && args.client_ip == ClientIp::ProxyV1 {
        eprintln!("realip lb: PROXY v1 has no datagram form; use none or proxy-v2 with --mode udp");
        return ExitCode::from(2);
    }
    rt.block_on(async move {
        let pool = Arc::new(Pool::new(args.schedule, args.backends));
        let tcp_stats = Arc::new(TcpStats::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = if args.mode == "udp" {
            let socket = match tokio::net::UdpSocket::bind(args.listen).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("realip lb: binding {}: {e}", args.listen);
                    return ExitCode::from(2);
                }
            };
            let local = socket.local_addr().map_or(args.listen, |a| a);
            tracing::info!(udp = %local, backends = pool.backends().len(), "listening");
            let config = UdpConfig {
                proxy_v2: args.client_ip == ClientIp::ProxyV2,
                idle_timeout: args.idle_timeout,
                max_flows: args.max_flows,
            };
            tokio::spawn(realip_lb::udp::serve(
                socket,
                pool.clone(),
                config,
                stop_rx.clone(),
            ))
        } else {
            let listener = match tokio::net::TcpListener::bind(args.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("realip lb: binding {}: {e}", args.listen);
                    return ExitCode::from(2);
                }
            };
            let local = listener.local_addr().map_or(args.listen, |a| a);
            let stats = tcp_stats.clone();
            let metrics = match args.metrics {
                Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => {
                        let at = l.local_addr().map_or(addr, |a| a);
                        tokio::spawn(realip_lb::metrics::serve(l, stats.clone(), pool.clone()));
                        Some(at)
                    }
                    Err(e) => {
                        eprintln!("realip lb: binding {addr}: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => None,
            };
            tracing::info!(
                tcp = %local,
                metrics = %metrics.map_or("-".to_string(), |m| m.to_string()),
                backends = pool.backends().len(),
                "listening"
            );
            let config = TcpConfig {
                client_ip: args.client_ip,
                accept_proxy: args.accept_proxy,
                trusted,
                connect_timeout: args.connect_timeout,
                idle_timeout: args.idle_timeout,
            };
            tokio::spawn(realip_lb::tcp::serve(
                listener,
                pool.clone(),
                config,
                stats,
                stop_rx.clone(),
            ))
        };
        if let Some(check) = args.health {
            tokio::spawn(realip_lb::pool::run_checks(
                pool.clone(),
                Checks {
                    check,
                    interval: args.health_interval,
                    timeout: args.health_timeout,
                    rise: args.rise,
                    fall: args.fall,
                    port: args.health_port,
                },
                stop_rx,
            ));
        }
        crate::logging::wait_for_signal().await;
        let _ = stop_tx.send(true);
        let _ = server.await;
        let left = tcp_stats.drain(args.grace).await;
        if left > 0 {
            tracing::warn!(open = left, grace = ?args.grace, "closing connections still open after the grace time");
        }
        ExitCode::SUCCESS
    })
}
