//! The response bodies, as pure functions of what one request showed.
//!
//! Formats stay compatible with the tools scripts already parse:
//! traefik/whoami's `/` and `/api`, the Kubernetes echoserver, and agnhost
//! netexec's `/clientip`. Our additions come after theirs, so a parser that
//! stops at what it knows still works.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method, Uri, Version};
use realip_core::json::{JsonClient, JsonResolution};
use realip_core::proxy;
use realip_core::{ClientAddr, Resolution};
use serde_json::{json, Map, Value};

/// What TLS showed, when the listener speaks it.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The protocol version, e.g. TLSv1_3.
    pub version: Option<String>,
    /// The client certificate's subject, under mTLS.
    pub client_subject: Option<String>,
}

/// Everything one request showed the pod.
#[derive(Debug)]
pub struct Seen<'a> {
    /// `--name`.
    pub name: Option<&'a str>,
    /// The machine's host name.
    pub hostname: &'a str,
    /// The machine's addresses.
    pub ips: &'a [IpAddr],
    /// [`preamble`] of name, hostname and addresses.
    pub preamble: &'a str,
    /// The socket peer (getpeername).
    pub peer: SocketAddr,
    /// The method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers as received (hyper lowercases HTTP/1 names).
    pub headers: &'a HeaderMap,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The PROXY header, when the listener expects one.
    pub proxy: Option<&'a proxy::OwnedHeader>,
    /// TLS details, when the listener speaks TLS.
    pub tls: Option<&'a TlsInfo>,
    /// The resolved client and how it was found.
    pub resolution: &'a Resolution,
}

impl Seen<'_> {
    /// The Host: header, or the h2 `:authority`.
    pub fn host(&self) -> String {
        self.host_str().into_owned()
    }

    /// [`Seen::host`] without a copy when the header is there.
    pub fn host_str(&self) -> std::borrow::Cow<'_, str> {
        match self
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(h) => h.into(),
            None => self.uri.authority().map_or("", |a| a.as_str()).into(),
        }
    }

    /// The path and query as requested.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

/// Go's canonical header key (`x-forwarded-for` -> `X-Forwarded-For`), so
/// output matches what traefik/whoami prints.
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_canonical(&mut out, name);
    out
}

fn push_canonical(out: &mut String, name: &str) {
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
        upper = c == '-';
    }
}

/// The lines that never change: `Name:`, `Hostname:`, one `IP:` per
/// address. Made once at startup.
pub fn preamble(name: Option<&str>, hostname: &str, ips: &[IpAddr]) -> String {
    let mut out = String::new();
    if let Some(n) = name {
        let _ = writeln!(out, "Name: {n}");
    }
    let _ = writeln!(out, "Hostname: {hostname}");
    for ip in ips {
        let _ = writeln!(out, "IP: {ip}");
    }
    out
}

/// `ip:port` as Go's net.JoinHostPort writes it (brackets for IPv6).
pub fn host_port(sa: SocketAddr) -> String {
    sa.to_string()
}

/// The resolved client as `ip:port`, or the bare IP when no hop carried a
/// port (an X-Forwarded-For entry usually has none).
pub fn client_text(c: &ClientAddr) -> String {
    c.to_string()
}

fn version_text(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn header_value_text(v: &http::HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn proxy_line(h: &proxy::OwnedHeader) -> String {
    let version = match h.version {
        proxy::Version::V1 => "v1",
        proxy::Version::V2 => "v2",
    };
    match (h.command, h.addresses.source(), h.addresses.destination()) {
        (proxy::Command::Local, _, _) => format!("{version} LOCAL"),
        (_, Some(s), Some(d)) => format!("{version} {s} -> {d}"),
        _ => format!("{version} (no address)"),
    }
}

/// `/`: the traefik/whoami layout, then our additions.
pub fn text(seen: &Seen<'_>, env: Option<&[(String, String)]>) -> String {
    let mut tail = String::new();
    resolution_lines(seen.resolution, &mut tail);
    text_parts(seen, env, &remote_line(seen.peer), &tail)
}

/// `RemoteAddr: ip:port` and its newline: the same for every request on a
/// connection, so the server makes it once per connection.
pub fn remote_line(peer: SocketAddr) -> String {
    format!("RemoteAddr: {peer}\n")
}

/// `/` with the per-connection parts already made: `remote` from
/// [`remote_line`] and `tail` from [`resolution_lines`].
pub fn text_parts(
    seen: &Seen<'_>,
    env: Option<&[(String, String)]>,
    remote: &str,
    tail: &str,
) -> String {
    let mut out = String::with_capacity(512 + tail.len());
    out.push_str(seen.preamble);
    out.push_str(remote);
    out.push_str(seen.method.as_str());
    out.push(' ');
    out.push_str(seen.path_and_query());
    out.push(' ');
    out.push_str(version_text(seen.version));
    out.push('\n');
    let host = seen.host_str();
    if !host.is_empty() {
        out.push_str("Host: ");
        out.push_str(&host);
        out.push('\n');
    }
    for (k, v) in seen.headers {
        if k == http::header::HOST {
            continue;
        }
        push_canonical(&mut out, k.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        out.push('\n');
    }
    out.push('\n');
    if let Some(env) = env {
        for (k, v) in env {
            let _ = writeln!(out, "{k}={v}");
        }
        out.push('\n');
    }
    if let Some(p) = seen.proxy {
        let _ = writeln!(out, "Proxy: {}", proxy_line(p));
    }
    if let Some(t) = seen.tls {
        let _ = writeln!(
            out,
            "TLS: {} {}",
            t.version.as_deref().unwrap_or("?"),
            t.alpn.as_deref().unwrap_or("-")
        );
        if let Some(s) = &t.client_subject {
            let _ = writeln!(out, "ClientCert: {s}");
        }
    }
    out.push_str(tail);
    out
}

/// The `RealIP:`, `Strategy:` and `Hop:` lines of `/`.
pub fn resolution_lines(res: &Resolution, out: &mut String) {
    match &res.client {
        Some(c) => {
            let _ = writeln!(out, "RealIP: {} ({})", client_text(c), c.source);
        }
        None => out.push_str("RealIP: none\n"),
    }
    if let Some(step) = res.decisive() {
        let _ = writeln!(out, "Strategy: {} ({})", step.strategy, step.stop);
        for (i, h) in step.hops.iter().enumerate() {
            let mark = if step.answer == Some(i) {
                " <- client"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "Hop: {} {} {} ({}){mark}",
                h.source,
                h.addr,
                h.verdict.word(),
                h.verdict.reason()
            );
        }
    }
}

/// `/api`: traefik/whoami's JSON field names, plus `realIp` and `hops`.
pub fn api(seen: &Seen<'_>, env: Option<&[(String, String)]>) -> Value {
    let mut headers = Map::new();
    for (k, v) in seen.headers {
        let entry = headers
            .entry(canonical(k.as_str()))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.push(Value::String(header_value_text(v)));
        }
    }
    let res = JsonResolution::from(seen.resolution);
    let mut v = json!({
        "hostname": seen.hostname,
        "ip": seen.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "headers": headers,
        "url": seen.path_and_query(),
        "host": seen.host(),
        "method": seen.method.as_str(),
        "name": seen.name.unwrap_or(""),
        "remoteAddr": host_port(seen.peer),
        "realIp": seen.resolution.client.as_ref().map(JsonClient::from),
        "strategy": res.strategy,
        "stop": res.stop,
        "flagged": res.flagged,
        "hops": res.hops,
    });
    if let Some(p) = seen.proxy {
        v["proxyProtocol"] = json!({
            "version": match p.version { proxy::Version::V1 => 1, proxy::Version::V2 => 2 },
            "command": match p.command { proxy::Command::Local => "LOCAL", proxy::Command::Proxy => "PROXY" },
            "source": p.addresses.source().map(|s| s.to_string()),
            "destination": p.addresses.destination().map(|s| s.to_string()),
        });
    }
    if let Some(t) = seen.tls {
        v["tls"] = json!({
            "version": t.version,
            "alpn": t.alpn,
            "clientSubject": t.client_subject,
        });
    }
    if let Some(env) = env {
        v["environ"] = Value::Array(
            env.iter()
                .map(|(k, val)| Value::String(format!("{k}={val}")))
                .collect(),
        );
    }
    v
}

/// `/echoserver`: the Kubernetes echoserver (1.10+) layout.
pub fn echoserver(seen: &Seen<'_>) -> String {
    let mut out = String::with_capacity(1024);
    let host = seen.host();
    let _ = write!(
        out,
        "\n\nHostname: {}\n\nPod Information:\n\t-no pod information available-\n\n\
         Server values:\n\tserver_version=realip-whoami/{}\n\n\
         Request Information:\n\tclient_address={}\n\tmethod={}\n\treal path={}\n\tquery={}\n\t\
         request_version={}\n\trequest_scheme={}\n\trequest_uri={}://{}{}\n\n\
         Request Headers:\n",
        seen.hostname,
        env!("CARGO_PKG_VERSION"),
        seen.peer.ip(),
        seen.method,
        seen.uri.path(),
        seen.uri.query().unwrap_or(""),
        match seen.version {
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2.0",
            _ => "1.1",
        },
        seen.scheme,
        seen.scheme,
        host,
        seen.path_and_query(),
    );
    let mut lines: Vec<String> = seen
        .headers
        .iter()
        .map(|(k, v)| format!("\t{}={}\n", k.as_str(), header_value_text(v)))
        .collect();
    if seen.headers.get(http::header::HOST).is_none() && !host.is_empty() {
        lines.push(format!("\thost={host}\n"));
    }
    // echoserver (nginx + lua) prints headers sorted by name.
    lines.sort();
    for l in lines {
        out.push_str(&l);
    }
    out.push_str("\nRequest Body:\n\t-no body in request-\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_core::{Request, Resolver, Strategy, TrustSet};

    fn fixture(f: impl FnOnce(&Seen<'_>)) {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com:8080".parse().unwrap());
        headers.insert("user-agent", "curl/8".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
        let peer: SocketAddr = "10.0.0.5:4242".parse().unwrap();
        let r = Resolver::new(
            TrustSet::parse(["10.0.0.0/8"]).unwrap(),
            vec!["rightmost-trusted-range".parse::<Strategy>().unwrap()],
        );
        let hh = realip_http::HttpHeaders(&headers);
        let res = r.explain(&Request::new(peer, &hh));
        let uri: Uri = "/a/b?x=1".parse().unwrap();
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let pre = preamble(Some("pod-a"), "node-1", &ips);
        let seen = Seen {
            name: Some("pod-a"),
            hostname: "node-1",
            ips: &ips,
            preamble: &pre,
            peer,
            method: &Method::GET,
            uri: &uri,
            version: Version::HTTP_11,
            headers: &headers,
            scheme: "http",
            proxy: None,
            tls: None,
            resolution: &res,
        };
        f(&seen)
    }

    #[test]
    fn whoami_text_layout() {
        fixture(|s| {
            let t = text(s, None);
            let lines: Vec<&str> = t.lines().collect();
            assert_eq!(lines[0], "Name: pod-a");
            assert_eq!(lines[1], "Hostname: node-1");
            assert_eq!(lines[2], "IP: 127.0.0.1");
            assert_eq!(lines[3], "IP: ::1");
            assert_eq!(lines[4], "RemoteAddr: 10.0.0.5:4242");
            assert_eq!(lines[5], "GET /a/b?x=1 HTTP/1.1");
            assert_eq!(lines[6], "Host: example.com:8080");
            assert!(t.contains("\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\n"));
            assert!(
                t.contains("\nRealIP: 203.0.113.7 (X-Forwarded-For[0])\n"),
                "{t}"
            );
            assert!(t.contains("Hop: peer 10.0.0.5:4242 trusted"));
        });
    }

    #[test]
    fn api_fields() {
        fixture(|s| {
            let v = api(s, None);
            for k in [
                "hostname",
                "ip",
                "headers",
                "url",
                "host",
                "method",
                "name",
                "remoteAddr",
            ] {
                assert!(v.get(k).is_some(), "{k}");
            }
            assert_eq!(v["remoteAddr"], "10.0.0.5:4242");
            assert_eq!(v["url"], "/a/b?x=1");
            assert_eq!(v["headers"]["X-Forwarded-For"][0], "203.0.113.7, 10.0.0.1");
            assert_eq!(v["realIp"]["ip"], "203.0.113.7");
            assert_eq!(v["realIp"]["source"], "header");
            assert_eq!(v["hops"].as_array().unwrap().len(), 3);
        });
    }

    #[test]
    fn echoserver_layout() {
        fixture(|s| {
            let t = echoserver(s);
            assert!(t.contains("\nHostname: node-1\n"));
            assert!(t.contains("Request Information:\n\tclient_address=10.0.0.5\n\tmethod=GET\n\treal path=/a/b\n\tquery=x=1\n\trequest_version=1.1\n\trequest_scheme=http\n\trequest_uri=http://example.com:8080/a/b?x=1\n"), "{t}");
            assert!(t.contains("Request Headers:\n\thost=example.com:8080\n\tuser-agent=curl/8\n\tx-forwarded-for=203.0.113.7, 10.0.0.1\n"), "{t}");
        });
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical("X-REAL-IP"), "X-Real-Ip");
        assert_eq!(canonical("accept"), "Accept");
    }
}
