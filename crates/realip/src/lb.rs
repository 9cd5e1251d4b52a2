//! `realip lb`: the seeds' cloud load balancer and ingress. One listener
//! from flags, or any number from `--config FILE` (reloaded on SIGHUP), or
//! one whose nodes come from a Kubernetes Service (`--service`, in
//! [`service`]).

mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use realip_lb::config::{
    Addr, BackendSpec, CheckField, ClientIpField, Config, Dur, HeaderField, HealthSpec,
    HttpListener, ListenerSpec, MethodField, Mode, ModeName, Offence, PoolSpec, ProxyModeField,
    RouteSpec, TcpListener, TlsSpec, UdpClientIp, UdpListener, UnderscoresField, UpgradeField,
    XffField,
};
use realip_lb::forward::Header;
use realip_lb::health::Check;
use realip_lb::server::Running;
use realip_lb::tcp::ClientIp;
use realip_lb::{Backend, Method};

#[derive(Debug, clap::Args)]
#[command(
    about = "The cloud load balancer and ingress in front of the nodes: HTTP, TCP and UDP",
    long_about = "The seeds' cloud load balancer (ULB, SLB, CLB) and ingress controller. \
One listener from flags, or any number of listeners and pools from --config FILE (YAML; --check \
validates it and exits; SIGHUP reloads it in place: a bad file is refused with its line and the \
running configuration stays; connections in flight are not dropped).

--mode http: a reverse proxy (HTTP/1.1, h2c, and h2 over TLS with --tls-cert/--tls-key) with pooled \
keep-alive connections to the backends. It adds the forwarding headers nginx-ingress adds \
(X-Forwarded-For, X-Real-IP, X-Forwarded-Proto/Host/Port, X-Original-Uri, X-Scheme, X-Request-Id; \
choose with --header, or --client-ip none for none). From a peer that is not --trusted every \
forwarding header is removed and the chain restarts at the peer; from a trusted one the chain is kept \
and the client resolved from it. No backend up: 503; a backend unreachable: 502 after trying \
--retries others; no answer in --response-timeout: 504. HTTP/1.1 upgrades pass through for the \
--upgrade protocols (websocket by default). Requests that could be read two ways are refused with 400 \
and the connection closed (two Host headers, a missing or listed Host, Content-Length and \
Transfer-Encoding together, a malformed chunked body); a backend answer that could be read two ways \
is 502; header names with underscores are dropped (--underscores-in-headers).

--mode tcp: --client-ip none (the backend sees this process: the seeds' problem), proxy-v1, \
proxy-v2 (haproxy's send-proxy / send-proxy-v2), or transparent (IP_TRANSPARENT: the backend sees \
the client's own address; the backend's route to the client must go through this host, which must \
deliver those replies locally: `socket transparent 1 meta mark set 1`, `ip rule add fwmark 1 lookup \
100`, `ip route add local 0.0.0.0/0 dev lo table 100`). --accept-proxy relays a PROXY header from a \
--trusted LB in front. --mode udp keeps a flow per client address (forgotten after --idle-timeout, \
at most --max-flows); with proxy-v2 every datagram carries the header.

Schedules: round-robin, weighted-round-robin, least-connections, source-hash (ULB's vserver-method \
source), maglev (consistent: removing a backend moves few other flows). --backend ADDR:PORT[=WEIGHT]. \
--health checks every --health-interval: --fall failures take a backend out, --rise passes bring it \
back; a kube-proxy health answer's localEndpoints (or X-Load-Balancing-Endpoint-Weight) becomes the \
node's weight, so every pod of a Local Service gets an equal share. SIGTERM stops accepting and lets \
open connections finish within --grace. --metrics serves Prometheus text.

--service NAMESPACE/NAME: the cloud provider's load balancer for that Service, configured from the \
API server as a cloud controller configures one (--kubeconfig, --master, or in-cluster, as `realip \
node` takes them). The backends are every Node at its InternalIP and the Service port's nodePort \
(--service-port NAME|NUMBER; default the port equal to --listen's, else the only one), leaving out, as \
the service controller of k8s.io/cloud-provider v1.37 does, Nodes being deleted, labelled \
node.kubernetes.io/exclude-from-external-load-balancers, or tainted ToBeDeletedByClusterAutoscaler; a \
NotReady node stays and the health check takes it out. The check follows externalTrafficPolicy: \
Local checks http:/healthz on spec.healthCheckNodePort (kube-proxy answers 200 with localEndpoints N, \
which becomes the node's weight, or 503 with none); Cluster checks kube-proxy's own http:/healthz on \
port 10256 (--health-port changes it), with the --health-interval, --health-timeout, --rise and --fall \
given. Every change (nodes, the policy, the ports) is applied in place, at most every 100 ms, keeping \
the health of nodes that stay and every open connection, and logged with what changed. READY=1 \
(NOTIFY_SOCKET) and the \"listening\" line come once the first lists are applied. A Service without \
a nodePort, or that does not exist, gives no backends, with a warning. For a Service of type \
LoadBalancer it writes status.loadBalancer.ingress: [{ip: the --listen address}], so `kubectl get \
svc` shows it as EXTERNAL-IP (--publish-status=false: not). It needs list and watch on services in \
the namespace and on nodes, and patch on services/status; a refusal or an unreachable API server is \
logged with the URL and the permission and retried with backoff, the pool staying as it is."
)]
pub struct Args {
    /// A YAML file of listeners and pools (see the README); the other
    /// listener flags are then not allowed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "backends", "service"])]
    config: Option<std::path::PathBuf>,
    /// With --config: check the file, print what it defines, and exit (0
    /// good, 2 refused).
    #[arg(long, requires = "config")]
    check: bool,
    /// What to balance: http, tcp or udp.
    #[arg(long, default_value = "tcp", value_parser = ["http", "tcp", "udp"])]
    mode: String,
    /// Where to listen.
    #[arg(long, value_name = "ADDR:PORT", required_unless_present = "config")]
    listen: Option<SocketAddr>,
    /// A backend, ADDR:PORT or ADDR:PORT=WEIGHT (repeatable).
    #[arg(long = "backend", value_name = "ADDR:PORT[=WEIGHT]", required_unless_present_any = ["config", "service"], value_parser = realip_lb::config::parse_backend)]
    backends: Vec<Backend>,
    /// Balance this Service's nodes, as its cloud load balancer (see above): the backends and the
    /// health check come from the API server and follow it.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with_all = ["backends", "health"])]
    service: Option<realip_kube::service_lb::ServiceRef>,
    /// With --service: which Service port, by name or by its port number (default: the one
    /// whose port is --listen's, else the only one).
    #[arg(
        long = "service-port",
        value_name = "NAME|NUMBER",
        requires = "service"
    )]
    service_port: Option<realip_kube::service_lb::PortSelector>,
    /// With --service: the API server of this kubeconfig's current context.
    #[arg(long, value_name = "FILE", requires = "service")]
    kubeconfig: Option<std::path::PathBuf>,
    /// With --service: the API server's URL; replaces the kubeconfig's server; without
    /// --kubeconfig, used with no credentials. With neither, in a pod, in-cluster config.
    #[arg(long, value_name = "URL", requires = "service")]
    master: Option<String>,
    /// With --service: write the Service's status.loadBalancer.ingress (type LoadBalancer only).
    #[arg(long = "publish-status", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    publish_status: bool,
    /// How the backend learns the client. tcp: none, proxy-v1, proxy-v2 or
    /// transparent; udp: none or proxy-v2; http: xff (the forwarding
    /// headers, the default) or none.
    #[arg(long = "client-ip", value_name = "MODE")]
    client_ip: Option<String>,
    /// HTTP: a forwarding header to add (repeatable; default all of
    /// nginx-ingress's: x-forwarded-for, x-real-ip, x-forwarded-proto,
    /// x-forwarded-host, x-forwarded-port, x-original-uri, x-scheme,
    /// x-request-id; forwarded is also available).
    #[arg(long = "header", value_name = "NAME")]
    headers: Vec<Header>,
    /// HTTP: X-Forwarded-For gets the peer appended (append) or only the
    /// resolved client (client).
    #[arg(long, default_value = "append")]
    xff: realip_lb::forward::XffMode,
    /// HTTP: request headers whose name holds `_`: drop (as nginx's
    /// default `underscores_in_headers off`) or pass. CGI, WSGI, PHP and
    /// Rack read `X_Forwarded_For` as X-Forwarded-For, so any spelling of a
    /// forwarding header is removed whichever is chosen.
    #[arg(
        long = "underscores-in-headers",
        default_value = "drop",
        value_name = "drop|pass"
    )]
    underscores: realip_lb::forward::Underscores,
    /// HTTP: a protocol an HTTP/1.1 Upgrade may switch to (repeatable;
    /// default websocket). Other Upgrade requests go on as plain requests
    /// without it; h2c is refused (its tunnel would carry requests past
    /// the proxy's rewriting).
    #[arg(long = "upgrade", value_name = "PROTOCOL")]
    upgrades: Vec<realip_lb::config::UpgradeToken>,
    /// HTTP: terminate TLS with this PEM certificate chain (h2 and
    /// HTTP/1.1 by ALPN).
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// HTTP: the PEM private key of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// round-robin, weighted-round-robin, least-connections, source-hash or maglev.
    #[arg(long, default_value = "round-robin")]
    schedule: Method,
    /// Health check per backend: tcp (connect), http:/PATH (2xx passes) or
    /// http:CODE:/PATH (CODE passes); a kube-proxy answer's localEndpoints
    /// or X-Load-Balancing-Endpoint-Weight becomes the backend's weight.
    /// Without it every backend is up.
    #[arg(long, value_name = "tcp|http:/PATH|http:CODE:/PATH")]
    health: Option<Check>,
    /// Check this port of each backend's address instead of the backend's
    /// own (a node's healthCheckNodePort). With --service: the port of
    /// kube-proxy's healthz, checked under externalTrafficPolicy Cluster
    /// (default 10256).
    #[arg(long = "health-port", value_name = "PORT")]
    health_port: Option<u16>,
    /// Time between health-check rounds.
    #[arg(long = "health-interval", default_value = "2s", value_parser = crate::process::parse_duration)]
    health_interval: Duration,
    /// Longest a health check may take.
    #[arg(long = "health-timeout", default_value = "1s", value_parser = crate::process::parse_duration)]
    health_timeout: Duration,
    /// Passes in a row that bring a backend back.
    #[arg(long, default_value = "2")]
    rise: u32,
    /// Failures in a row that take a backend out.
    #[arg(long, default_value = "3")]
    fall: u32,
    /// TCP and HTTP: expect a PROXY header (off, v1, v2, any) from an LB
    /// in front of this one and pass its client on (relay). Only --trusted
    /// peers may send one; a connection without a valid header is closed.
    #[arg(long = "accept-proxy", default_value = "off", value_name = "MODE")]
    accept_proxy: realip_net::ProxyMode,
    /// Who may speak for the client (a PROXY header; HTTP forwarding
    /// headers): CIDRs or presets (loopback, private, any). Nothing is
    /// trusted by default.
    #[arg(long, value_name = "CIDR|PRESET")]
    trusted: Vec<String>,
    /// On SIGTERM: stop accepting, let open connections finish for at
    /// most this long, then exit.
    #[arg(long, default_value = "10s", value_parser = crate::process::parse_duration)]
    grace: Duration,
    /// Serve Prometheus metrics (GET /metrics) here.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// UDP: most flows at once.
    #[arg(long = "max-flows", default_value = "65536")]
    max_flows: usize,
    /// Longest wait for a backend to accept.
    #[arg(long = "connect-timeout", default_value = "3s", value_parser = crate::process::parse_duration)]
    connect_timeout: Duration,
    /// TCP: close a connection with no traffic either way for this long;
    /// UDP: forget a flow.
    #[arg(long = "idle-timeout", default_value = "300s", value_parser = crate::process::parse_duration)]
    idle_timeout: Duration,
    /// HTTP: longest wait for a backend's response head (504 after).
    #[arg(long = "response-timeout", default_value = "60s", value_parser = crate::process::parse_duration)]
    response_timeout: Duration,
    /// TCP and HTTP: connections served at once (more wait in the listen
    /// backlog); UDP: see --max-flows.
    #[arg(long = "max-connections", default_value = "10000")]
    max_connections: usize,
    /// HTTP: other backends tried when one cannot be reached.
    #[arg(long, default_value = "2")]
    retries: u32,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Log format.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// The configuration the one-listener flags describe.
fn from_flags(a: &Args) -> Result<Config, String> {
    let pool = PoolSpec {
        schedule: MethodField(a.schedule),
        backends: a.backends.iter().cloned().map(BackendSpec).collect(),
        health: a.health.clone().map(|c| health_spec(a, c, a.health_port)),
    };
    from_flags_with(a, pool)
}

/// A pool's health settings: `check` on `port`, at the flags' pace.
fn health_spec(a: &Args, check: Check, port: Option<u16>) -> HealthSpec {
    HealthSpec {
        check: CheckField(check),
        port,
        interval: Dur(a.health_interval),
        timeout: Dur(a.health_timeout),
        rise: a.rise,
        fall: a.fall,
    }
}

/// The one listener of the flags, on `pool`.
fn from_flags_with(a: &Args, pool: PoolSpec) -> Result<Config, String> {
    let listen = a.listen.ok_or("--listen is required without --config")?;
    let accept_proxy = ProxyModeField(a.accept_proxy);
    let mode = match a.mode.as_str() {
        "http" => Mode::Http(http_from_flags(a, accept_proxy)?),
        mode => {
            if !a.headers.is_empty() || a.tls_cert.is_some() {
                return Err("--header and --tls-cert are for --mode http".into());
            }
            let client_ip = a.client_ip.as_deref().unwrap_or("none");
            if mode == "udp" {
                if a.accept_proxy.is_on() {
                    let offence = Offence::NotForMode {
                        field: "accept_proxy",
                        mode: ModeName::Udp,
                    };
                    return Err(offence.to_string());
                }
                Mode::Udp(UdpListener {
                    pool: "default".into(),
                    client_ip: client_ip
                        .parse::<UdpClientIp>()
                        .map_err(|e| e.to_string())?,
                    connect_timeout: Some(Dur(a.connect_timeout)),
                    idle_timeout: Dur(a.idle_timeout),
                    max_connections: a.max_flows,
                })
            } else {
                Mode::Tcp(TcpListener {
                    pool: "default".into(),
                    client_ip: ClientIpField(
                        client_ip.parse::<ClientIp>().map_err(|e| e.to_string())?,
                    ),
                    accept_proxy,
                    proxy_v2: None,
                    connect_timeout: Dur(a.connect_timeout),
                    idle_timeout: Dur(a.idle_timeout),
                    max_connections: a.max_connections,
                })
            }
        }
    };
    let l = ListenerSpec {
        name: Some(a.mode.clone()),
        listen: Addr(listen),
        trusted: a.trusted.clone(),
        mode,
    };
    let config = Config {
        pools: [("default".to_string(), pool)].into_iter().collect(),
        listeners: vec![l],
        metrics: a.metrics.map(Addr),
        grace: Dur(a.grace),
    };
    Ok(config)
}

/// The http listener the flags describe: one route to the pool.
fn http_from_flags(a: &Args, accept_proxy: ProxyModeField) -> Result<HttpListener, String> {
    let headers = match a.client_ip.as_deref() {
        None | Some("xff") if a.headers.is_empty() => None,
        None | Some("xff") => Some(a.headers.iter().copied().map(HeaderField).collect()),
        Some("none") => Some(Vec::new()),
        Some(other) => {
            return Err(format!(
                "--client-ip {other} is not an HTTP mode: xff (forwarding headers) or none"
            ))
        }
    };
    let upgrades =
        (!a.upgrades.is_empty()).then(|| a.upgrades.iter().cloned().map(UpgradeField).collect());
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSpec {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    Ok(HttpListener {
        accept_proxy,
        routes: vec![RouteSpec {
            host: None,
            path: "/".into(),
            pool: "default".into(),
        }],
        headers,
        xff: XffField(a.xff),
        underscores: UnderscoresField(a.underscores),
        upgrades,
        tls,
        connect_timeout: Some(Dur(a.connect_timeout)),
        idle_timeout: Some(Dur(a.idle_timeout)),
        response_timeout: Dur(a.response_timeout),
        max_connections: a.max_connections,
        retries: a.retries,
        ..HttpListener::default()
    })
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    Config::parse(&name, &text).map_err(|e| e.to_string())
}

/// Run `realip lb`.
pub fn run(args: Args) -> ExitCode {
    crate::logging::init(&args.log_format);
    if let Some(target) = args.service.clone() {
        return service::run(&args, target);
    }
    // clap lets `requires = "service"` pass when --service would conflict
    // with a flag given (--backend), so it is said here.
    if args.kubeconfig.is_some() || args.master.is_some() || args.service_port.is_some() {
        eprintln!(
            "realip lb: --kubeconfig, --master and --service-port are for --service NAMESPACE/NAME"
        );
        return ExitCode::from(2);
    }
    let config = match &args.config {
        Some(path) => load(path),
        // The same checks a file gets (udp with proxy-v1, ...).
        None => from_flags(&args).and_then(|c| c.checked().map(|()| c).map_err(|e| e.to_string())),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realip lb: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        let pools: Vec<_> = config.pools.keys().map(String::as_str).collect();
        let listeners: Vec<_> = config
            .listeners
            .iter()
            .map(|l| format!("{} on {}", l.display_name(), l.listen.0))
            .collect();
        crate::logging::print_out(&format!(
            "ok: {} listener(s): {}; pools: {}\n",
            listeners.len(),
            listeners.join(", "),
            pools.join(", ")
        ));
        return ExitCode::SUCCESS;
    }
    let rt = match crate::process::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realip lb: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(config, args.config))
}

async fn serve(config: Config, path: Option<std::path::PathBuf>) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let mut running = match Running::start(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realip lb: {e}");
            return ExitCode::from(2);
        }
    };
    announce(&running);
    let mut grace = config.grace.0;
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("realip lb: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let Some(path) = &path else {
                    tracing::warn!("SIGHUP without --config: nothing to reload");
                    continue;
                };
                match load(path) {
                    Err(e) => tracing::error!(error = %e, "reload refused; the running configuration stays"),
                    Ok(new) => match running.apply(&new).await {
                        Ok(()) => {
                            grace = new.grace.0;
                            tracing::info!(file = %path.display(), "reloaded");
                        }
                        Err(e) => tracing::error!(error = %e, "reload refused; the running configuration stays"),
                    },
                }
            }
            _ = term.recv() => { tracing::info!("SIGTERM"); break; }
            _ = int.recv() => { tracing::info!("SIGINT"); break; }
        }
    }
    let left = running.stop(grace).await;
    if left > 0 {
        tracing::warn!(
            open = left,
            ?grace,
            "closing connections still open after the grace time"
        );
    }
    ExitCode::SUCCESS
}

/// One line that names every address: `http=`, `tcp=`, `udp=` (the
/// first of each), `metrics=`, and all listeners.
pub(crate) fn announce(running: &Running) {
    let (listeners, metrics) = running.addresses();
    let first = |m: &str| {
        listeners
            .iter()
            .find(|(_, mode, _)| *mode == m)
            .map_or("-".to_string(), |(_, _, a)| a.to_string())
    };
    let all: Vec<_> = listeners
        .iter()
        .map(|(n, m, a)| format!("{n}={m}://{a}"))
        .collect();
    tracing::info!(
        http = %first("http"),
        tcp = %first("tcp"),
        udp = %first("udp"),
        metrics = %metrics.map_or("-".to_string(), |m| m.to_string()),
        listeners = %all.join(" "),
        "listening"
    );
    crate::ready::notify(&format!("listening: {}", all.join(" ")));
}
