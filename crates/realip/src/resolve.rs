//! `realip resolve`: the core library on the command line.

use std::fmt::Write as _;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use realip_core::json::JsonResolution;
use realip_core::proxy;
use realip_core::{Addr, ProxyClaim, Request, Resolution, Resolver, Strategy, TrustSet};

/// Exit code for bad arguments or unreadable input.
const EXIT_USAGE: u8 = 2;
/// Exit code when no strategy yields an address.
const EXIT_UNRESOLVED: u8 = 1;

/// The most PROXY header bytes read from a file: a v2 header is at most
/// 16 + 65535 bytes; anything past the header is ignored anyway.
const MAX_PROXY_INPUT: u64 = 16 + 65_535;

#[derive(Debug, clap::Args)]
#[command(
    about = "What would this request resolve to under this trust configuration?",
    long_about = "Resolve the client address of one request, the way a server using realip-core \
would: from the socket peer, the request's headers, a PROXY protocol header, a TOA option or a \
custom protocol's client-IP field, believing only what trusted peers say. Prints every hop, \
whether it was trusted and why, and why the walk stopped.\n\n\
Exit status: 0 with an answer, 1 when no address can be resolved, 2 on bad arguments."
)]
pub struct Args {
    /// The socket peer: 10.0.0.5:555, [2001:db8::1]:443 or a bare IP.
    #[arg(long, value_name = "ADDR")]
    peer: String,

    /// A request header, `Name: value`; repeat for more, in arrival order.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Who may speak for the client: CIDR, address or preset; repeatable.
    #[arg(long, value_name = "CIDR|PRESET")]
    trusted: Vec<String>,

    /// Strategy, or a comma-separated chain; repeatable (chained in order).
    /// Default: rightmost-trusted-range (over X-Forwarded-For).
    #[arg(long, value_name = "NAME")]
    strategy: Vec<String>,

    /// Raw PROXY protocol v1/v2 header bytes from FILE, or - for stdin.
    #[arg(long = "proxy-protocol", value_name = "FILE|-")]
    proxy_protocol: Option<PathBuf>,

    /// The address a TOA TCP option carried (ip:port).
    #[arg(long, value_name = "ADDR")]
    toa: Option<String>,

    /// The custom protocol's client-IP field (an IP).
    #[arg(long = "client-field", value_name = "IP")]
    client_field: Option<String>,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The long help's tail: trust presets, every strategy with an example (the
/// text lives in realip-core beside the parser), and examples.
pub fn long_help() -> String {
    format!(
        "Trust (--trusted, repeatable): a CIDR (10.0.0.0/8, 2001:db8::/32), an address, or a preset:
  loopback   127.0.0.0/8, ::1
  private    10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16, fc00::/7, fe80::/10
  any        every address
Nothing is trusted unless named: without --trusted, headers are never believed.

{}
Examples:
  realip resolve --peer 10.0.0.5:555 --trusted 10.0.0.0/8 \\
      --header 'X-Forwarded-For: 3.3.3.3, 10.0.0.1'
  printf 'PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\\r\\n' | realip resolve --peer 127.0.0.1:40000 \\
      --trusted loopback --strategy proxy-protocol --proxy-protocol -
",
        realip_core::strategy::STRATEGY_HELP
    )
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("realip resolve: {msg}");
    ExitCode::from(code)
}

fn parse_socket(what: &str, text: &str) -> Result<SocketAddr, String> {
    let a = Addr::parse(text).map_err(|e| format!("{what} {text:?}: {e}"))?;
    if a.zone.is_some() {
        return Err(format!(
            "{what} {text:?}: a zoned address cannot be a socket peer here"
        ));
    }
    Ok(SocketAddr::new(a.ip, a.port.unwrap_or(0)))
}

fn read_proxy(path: &PathBuf) -> Result<ProxyClaim, String> {
    let mut buf = Vec::new();
    let shown = path.display();
    let res = if path.as_os_str() == "-" {
        std::io::stdin().take(MAX_PROXY_INPUT).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_PROXY_INPUT).read_to_end(&mut buf))
    };
    res.map_err(|e| format!("reading the PROXY header from {shown}: {e}"))?;
    let cfg = proxy::ParseConfig::default();
    match proxy::parse(&buf, &cfg) {
        Ok(proxy::Parsed::Complete(h)) => Ok(match (h.command, h.addresses.source()) {
            (proxy::Command::Proxy, Some(src)) => ProxyClaim::Source(src),
            _ => ProxyClaim::NoAddress,
        }),
        Ok(proxy::Parsed::Incomplete { needed }) => Err(format!(
            "the PROXY header in {shown} is truncated: {needed} more bytes needed ({} read)",
            buf.len()
        )),
        Err(e) => Err(format!("the PROXY header in {shown} is invalid: {e}")),
    }
}

struct Built {
    resolver: Resolver,
    peer: SocketAddr,
    headers: Vec<(String, String)>,
    proxy: Option<ProxyClaim>,
    toa: Option<SocketAddr>,
    field: Option<IpAddr>,
}

fn build(args: &Args) -> Result<Built, String> {
    let peer = parse_socket("--peer", &args.peer)?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))?;
        let name = name.trim();
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(format!("--header {h:?}: bad header name {name:?}"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let trusted = TrustSet::parse(args.trusted.iter().map(String::as_str))
        .map_err(|e| format!("--trusted: {e}"))?;
    let mut chain = Strategy::parse_chains(args.strategy.iter().map(String::as_str))
        .map_err(|e| format!("--strategy: {e}"))?;
    if chain.is_empty() {
        chain.push(Strategy::RightmostTrustedRange(
            realip_core::strategy::DEFAULT_LIST_HEADER.into(),
        ));
    }
    let proxy = args.proxy_protocol.as_ref().map(read_proxy).transpose()?;
    let toa = args
        .toa
        .as_deref()
        .map(|t| parse_socket("--toa", t))
        .transpose()?;
    let field = args
        .client_field
        .as_deref()
        .map(|t| {
            Addr::parse(t)
                .map(|a| a.ip)
                .map_err(|e| format!("--client-field {t:?}: {e}"))
        })
        .transpose()?;
    Ok(Built {
        resolver: Resolver::new(trusted, chain),
        peer,
        headers,
        proxy,
        toa,
        field,
    })
}

/// Run `realip resolve`.
pub fn run(args: Args) -> ExitCode {
    let b = match build(&args) {
        Ok(b) => b,
        Err(msg) => return fail(EXIT_USAGE, msg),
    };
    let mut req = Request::new(b.peer, &b.headers);
    req.proxy = b.proxy;
    req.toa = b.toa;
    req.field = b.field;
    let res = b.resolver.explain(&req);
    if args.json {
        match serde_json::to_string_pretty(&JsonResolution::from(&res)) {
            Ok(s) => {
                crate::logging::print_out(&format!("{s}\n"));
            }
            Err(e) => return fail(EXIT_USAGE, format!("encoding JSON: {e}")),
        }
    } else {
        crate::logging::print_out(&table(&res, b.resolver.trusted()));
    }
    match &res.client {
        Some(_) => ExitCode::SUCCESS,
        None => {
            let why = res
                .decisive()
                .map_or_else(|| "no strategy ran".to_string(), |s| s.stop.to_string());
            fail(
                EXIT_UNRESOLVED,
                format!("no client address could be resolved: {why}"),
            )
        }
    }
}

/// The human-readable report: the verdict first, then each strategy's hops.
pub fn table(res: &Resolution, trusted: &TrustSet) -> String {
    let mut out = String::new();
    match &res.client {
        Some(c) => {
            let _ = writeln!(out, "client    {c}  (from {})", c.source);
        }
        None => {
            let _ = writeln!(out, "client    (none)");
        }
    }
    let _ = writeln!(out, "trusted   {trusted}");
    for step in &res.steps {
        let _ = writeln!(out, "\nstrategy  {}", step.strategy);
        let _ = writeln!(out, "stopped   {}", step.stop);
        let rows: Vec<[String; 4]> = step
            .hops
            .iter()
            .map(|h| {
                [
                    h.source.to_string(),
                    h.addr.to_string(),
                    h.verdict.word().to_string(),
                    h.verdict.reason().to_string(),
                ]
            })
            .collect();
        let head = ["source", "address", "verdict", "why"];
        let mut w = head.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let _ = writeln!(
            out,
            "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
            head[0],
            head[1],
            head[2],
            head[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
        for (i, r) in rows.iter().enumerate() {
            let mark = if step.answer == Some(i) {
                "  <- client"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}{mark}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            );
        }
    }
    out
}
