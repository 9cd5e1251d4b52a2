//! `realip whoami`: argument parsing and process plumbing for the backend.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use realip_core::{Resolver, Strategy, TrustSet};
use realip_net::{ProxyLimits, ProxyMode};
use realip_whoami::{Config, FieldFormat, Limits, Server, TlsFiles};

/// The default strategy chain: the PROXY header when a listener expects
/// one, the client-IP field when one is configured, then X-Forwarded-For the
/// nginx way. Evidence that cannot arrive is not asked about, so the
/// explanation carries no empty steps.
fn default_chain(args: &Args) -> Vec<Strategy> {
    let mut chain = Vec::new();
    let proxy_on = [
        Some(args.proxy_protocol),
        args.tcp_proxy_protocol,
        args.udp_proxy_protocol,
    ]
    .into_iter()
    .flatten()
    .any(ProxyMode::is_on);
    if proxy_on {
        chain.push(Strategy::ProxyProtocol);
    }
    if args.client_field.is_some() {
        chain.push(Strategy::ClientField);
    }
    chain.push(Strategy::RightmostTrustedRange(
        realip_core::strategy::DEFAULT_LIST_HEADER.into(),
    ));
    chain
}

#[derive(Debug, clap::Args)]
#[command(
    about = "The backend that shows what a pod really sees: socket peer, every hop's claim, the resolved client",
    long_about = "Serve the whoami views of what this process saw: the socket peer (getpeername), what each \
hop claimed (X-Forwarded-For, X-Real-IP, Forwarded, a PROXY header, a client-IP field) and the client \
resolved under --trusted and --strategy, with the reason.\n\n\
HTTP listener (--listen): HTTP/1.1 and h2c on one port; with --cert/--key, TLS with h2 and HTTP/1.1 \
by ALPN; --cacert requires client certificates (mTLS) and shows the subject.\n\n\
Endpoints:\n  \
/             traefik/whoami text: Name:, Hostname:, IP: lines, RemoteAddr:, the request line and\n                \
headers, then RealIP: <addr> (<source>), Strategy: and one Hop: line per hop\n  \
/api          JSON with whoami's fields (hostname, ip, headers, url, host, method, name,\n                \
remoteAddr) plus realIp {ip, port, source}, hops (as in `realip resolve --json`)\n  \
/clientip     the socket peer as ip:port, no newline (agnhost netexec)\n  \
/realip       the resolved client as ip:port (bare ip when no hop carried a port); 422 if none\n  \
/echoserver   the Kubernetes echoserver layout (client_address=, method=, real path=, ...)\n  \
/health       GET: the stored status (200); POST a bare integer body to set it\n  \
/bench        1\n  \
/data         ?size=N&unit=B|KB|MB|GB: a generated payload (at most 1 GiB)\n\
Query parameters on any path: ?wait=500ms delays the reply (Go duration, at most 10m); \
?header=Name:value adds a response header (repeatable); ?env=true appends the process \
environment (off by default: it can leak secrets to whoever can reach the port).\n\n\
What is normalised (the http crate's header map, behind hyper and behind the plain HTTP/1.1 fast \
path that answers bodiless GET and HEAD): header names arrive lowercased and are printed in Go's \
canonical form (X-Forwarded-For), as traefik/whoami prints them; repeated headers keep their order; \
h2 requests show HTTP/2.0 and their :authority as Host; the request body is not echoed.\n\n\
TCP (--tcp) and UDP (--udp) line protocol: `WHO` answers peer=, client=, source=, hostname=; \
`CLIENTIP` the peer as ip:port; netexec's `hostname`, `echo <msg>`, `clientip` work too; any other \
line gets `Received: <line>`. UDP answers each datagram to its sender.\n\n\
PROXY protocol is configured per listener and never guessed: with a mode other than off, a \
connection must start with a valid header, and only peers in --trusted may send one; anything else \
is closed and counted. For UDP the v2 header travels in each datagram. --client-field v4|v6: the \
first 4 or 16 bytes of each TCP connection or UDP datagram carry the client IP in network order.\n\n\
SIGTERM or SIGINT: stop accepting, let in-flight requests finish within --grace, exit 0."
)]
pub struct Args {
    /// HTTP listen address.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR:PORT")]
    listen: SocketAddr,

    /// Shown as `Name:` and in /api.
    #[arg(long)]
    name: Option<String>,

    /// PEM certificate chain: serve TLS (h2 and HTTP/1.1 by ALPN).
    #[arg(long, requires = "key", value_name = "FILE")]
    cert: Option<PathBuf>,

    /// PEM private key for --cert.
    #[arg(long, requires = "cert", value_name = "FILE")]
    key: Option<PathBuf>,

    /// PEM CA bundle: require client certificates signed by it (mTLS).
    #[arg(long, requires = "cert", value_name = "FILE")]
    cacert: Option<PathBuf>,

    /// TCP line-protocol listen address.
    #[arg(long, value_name = "ADDR:PORT")]
    tcp: Option<SocketAddr>,

    /// UDP line-protocol listen address.
    #[arg(long, value_name = "ADDR:PORT")]
    udp: Option<SocketAddr>,

    /// PROXY protocol on the HTTP listener: off, v1, v2 or any.
    #[arg(long = "proxy-protocol", default_value = "off", value_name = "MODE")]
    proxy_protocol: ProxyMode,

    /// PROXY protocol on the TCP listener (default: as --proxy-protocol).
    #[arg(long = "tcp-proxy-protocol", value_name = "MODE")]
    tcp_proxy_protocol: Option<ProxyMode>,

    /// PROXY protocol on the UDP socket, v2 in each datagram (default: as --proxy-protocol).
    #[arg(long = "udp-proxy-protocol", value_name = "MODE")]
    udp_proxy_protocol: Option<ProxyMode>,

    /// A client-IP field at the front of TCP streams and UDP datagrams: v4 or v6.
    #[arg(long = "client-field", value_name = "v4|v6", value_parser = parse_field)]
    client_field: Option<FieldFormat>,

    /// Who may speak for the client (CIDR, address, or loopback/private/any); repeatable.
    #[arg(long, value_name = "CIDR|PRESET")]
    trusted: Vec<String>,

    /// Strategy chain (see `realip resolve --help`); repeatable. Default:
    /// proxy-protocol (when a listener expects PROXY), client-field (when
    /// --client-field is set), then rightmost-trusted-range.
    #[arg(long, value_name = "NAME")]
    strategy: Vec<String>,

    /// Log format.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// Time in-flight requests get after SIGTERM (Go duration: 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = crate::process::parse_duration)]
    grace: Duration,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Most concurrent connections per listener.
    #[arg(long = "max-connections", default_value_t = 4096)]
    max_connections: usize,

    /// Most bytes in a request head; larger gets 431.
    #[arg(long = "max-header-bytes", default_value_t = 16 * 1024)]
    max_header_bytes: usize,

    /// Most request headers; more gets 431.
    #[arg(long = "max-headers", default_value_t = 100)]
    max_headers: usize,

    /// A request head (and a PROXY header, a TLS handshake) must arrive within this time.
    #[arg(long = "header-timeout", default_value = "10s", value_parser = crate::process::parse_duration)]
    header_timeout: Duration,

    /// Close connections idle this long.
    #[arg(long = "idle-timeout", default_value = "60s", value_parser = crate::process::parse_duration)]
    idle_timeout: Duration,
}

fn parse_field(s: &str) -> Result<FieldFormat, String> {
    match s {
        "v4" => Ok(FieldFormat::V4),
        "v6" => Ok(FieldFormat::V6),
        _ => Err(format!("{s:?} is not v4 or v6")),
    }
}

fn config(args: &Args) -> Result<Config, String> {
    let trusted = TrustSet::parse(args.trusted.iter().map(String::as_str))
        .map_err(|e| format!("--trusted: {e}"))?;
    let mut chain = Strategy::parse_chains(args.strategy.iter().map(String::as_str))
        .map_err(|e| format!("--strategy: {e}"))?;
    if chain.is_empty() {
        chain = default_chain(args);
    }
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            cacert: args.cacert.clone(),
        }),
        _ => None,
    };
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        max_header_bytes: args.max_header_bytes,
        max_headers: args.max_headers,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        proxy: ProxyLimits {
            timeout: args.header_timeout,
            ..ProxyLimits::default()
        },
        ..Limits::default()
    };
    Ok(Config {
        listen: args.listen,
        http_proxy: args.proxy_protocol,
        name: args.name.clone(),
        tls,
        tcp: args.tcp,
        tcp_proxy: args.tcp_proxy_protocol.unwrap_or(args.proxy_protocol),
        udp: args.udp,
        udp_proxy: args.udp_proxy_protocol.unwrap_or(args.proxy_protocol),
        client_field: args.client_field,
        resolver: Resolver::new(trusted, chain),
        grace: args.grace,
        limits,
    })
}

/// Run `realip whoami` until SIGTERM/SIGINT.
pub fn run(args: Args) -> ExitCode {
    crate::logging::init(&args.log_format);
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realip whoami: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::process::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realip whoami: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match Server::bind(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("realip whoami: {e}");
                return ExitCode::FAILURE;
            }
        };
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
        tracing::info!(
            http = %show(server.http_addr()),
            tcp = %show(server.tcp_addr()),
            udp = %show(server.udp_addr()),
            "listening"
        );
        crate::ready::notify("listening");
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::logging::wait_for_signal().await;
            let _ = tx.send(true);
        });
        server.run(rx).await;
        ExitCode::SUCCESS
    })
}
