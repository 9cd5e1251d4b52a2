//! What whoami answers: the endpoints and their bodies, one log event per
//! request. Both HTTP paths (the h1 fast path and hyper) call `handle`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use realip_core::proxy::OwnedHeader;
use realip_core::ProxyClaim;
use realip_net::parse_duration as parse_go_duration;

use crate::render::{self, Seen, TlsInfo};
use crate::state::State;

/// What one connection showed before any request.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    proxy: Option<OwnedHeader>,
    claim: Option<ProxyClaim>,
    tls: Option<TlsInfo>,
    /// `/`'s `RemoteAddr:` line, made on first use.
    remote_line: OnceLock<String>,
    /// The answer for requests that carry none of the headers the chain
    /// reads: it depends only on the peer and the PROXY claim, which are the
    /// same for the whole connection, so it is worked out once.
    headerless: OnceLock<Explained>,
}

impl ConnInfo {
    pub(crate) fn new(
        peer: SocketAddr,
        proxy: Option<OwnedHeader>,
        claim: Option<ProxyClaim>,
        tls: Option<TlsInfo>,
    ) -> Self {
        ConnInfo {
            peer,
            proxy,
            claim,
            tls,
            remote_line: OnceLock::new(),
            headerless: OnceLock::new(),
        }
    }
}

/// A resolution and `/`'s lines for it.
#[derive(Debug)]
struct Explained {
    resolution: realip_core::Resolution,
    lines: String,
}

impl Explained {
    fn new(resolution: realip_core::Resolution) -> Self {
        let mut lines = String::new();
        render::resolution_lines(&resolution, &mut lines);
        Explained { resolution, lines }
    }
}

/// Response bodies: a buffer, or `/data`'s generated payload streamed in
/// chunks so a large size costs no memory.
pub(crate) enum Payload {
    Full(Option<Bytes>),
    Repeat { left: u64, chunk: Bytes },
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Payload::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Payload::Repeat { left, chunk } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(chunk.len() as u64) as usize;
                *left -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Full(b) => b.is_none(),
            Payload::Repeat { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Payload::Repeat { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Payload> {
    let mut r = Response::new(Payload::Full(Some(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Largest `/data` payload: generous for load tests, bounded for safety.
const MAX_DATA: u64 = 1 << 30;
/// Longest `?wait=`.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Largest body read (only `POST /health` reads one).
const MAX_BODY: usize = 64;

/// Query parameters, percent-decoded, in order.
fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn handle<B>(req: Request<B>, info: &ConnInfo, state: &State) -> Response<Payload>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // What the log line needs, taken only when the log is on: a clock read
    // and two clones per request are measurable against nginx
    // (bench/whoami.sh).
    let log = tracing::enabled!(tracing::Level::INFO).then(|| LogParts {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        started: std::time::Instant::now(),
    });
    let parts = log.as_ref();
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let cfg = &state.config;
    let headers = realip_http::HttpHeaders(req.headers());
    let mut evidence = realip_core::Request::new(info.peer, &headers);
    evidence.proxy = info.claim;
    let headerless = !state
        .resolver_headers
        .iter()
        .any(|h| req.headers().contains_key(h));
    // Only the pages that show hops pay for the explanation; the others
    // need just the client (for /realip and the log line).
    let shows_hops = !matches!(
        req.uri().path(),
        "/clientip" | "/realip" | "/echoserver" | "/bench" | "/health" | "/data"
    );
    let computed;
    let (resolution, lines) = if headerless {
        let e = info
            .headerless
            .get_or_init(|| Explained::new(cfg.resolver.explain(&evidence)));
        (&e.resolution, Some(e.lines.as_str()))
    } else if shows_hops {
        computed = cfg.resolver.explain(&evidence);
        (&computed, None)
    } else {
        computed = realip_core::Resolution {
            client: cfg.resolver.resolve(&evidence),
            steps: Vec::new(),
        };
        (&computed, None)
    };
    let query = query_pairs(req.uri().query());
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());

    if let Some(w) = get("wait") {
        match parse_go_duration(w) {
            Some(d) if d <= MAX_WAIT => tokio::time::sleep(d).await,
            _ => {
                return finish(
                    reply(
                        StatusCode::BAD_REQUEST,
                        TEXT,
                        format!("bad wait duration {w:?} (e.g. 500ms, 2s; at most 10m)\n"),
                    ),
                    parts,
                    info,
                    resolution,
                )
            }
        }
    }
    let env = (get("env") == Some("true")).then(|| std::env::vars().collect::<Vec<_>>());
    let seen = Seen {
        name: cfg.name.as_deref(),
        hostname: &state.hostname,
        ips: &state.ips,
        preamble: &state.preamble,
        peer: info.peer,
        method: req.method(),
        uri: req.uri(),
        version: req.version(),
        headers: req.headers(),
        scheme: if info.tls.is_some() { "https" } else { "http" },
        proxy: info.proxy.as_ref(),
        tls: info.tls.as_ref(),
        resolution,
    };
    let path = req.uri().path();
    let mut resp = match path {
        "/api" => {
            let v = render::api(&seen, env.as_deref());
            reply(StatusCode::OK, JSON, v.to_string())
        }
        "/clientip" => reply(StatusCode::OK, TEXT, render::host_port(info.peer)),
        "/realip" => match &resolution.client {
            Some(c) => reply(StatusCode::OK, TEXT, render::client_text(c)),
            None => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                TEXT,
                "no client address could be resolved",
            ),
        },
        "/echoserver" => reply(StatusCode::OK, TEXT, render::echoserver(&seen)),
        "/bench" => reply(StatusCode::OK, TEXT, Bytes::from_static(b"1")),
        "/health" => return finish(health(req, state).await, parts, info, resolution),
        "/data" => data(get("size"), get("unit")),
        _ => {
            let remote = info
                .remote_line
                .get_or_init(|| render::remote_line(info.peer));
            let body = match lines {
                Some(l) => render::text_parts(&seen, env.as_deref(), remote, l),
                None => {
                    let mut l = String::new();
                    render::resolution_lines(resolution, &mut l);
                    render::text_parts(&seen, env.as_deref(), remote, &l)
                }
            };
            reply(StatusCode::OK, TEXT, body)
        }
    };
    // `?header=Name:value` adds response headers (whoami #31).
    for (k, v) in &query {
        if k != "header" {
            continue;
        }
        let Some((name, value)) = v.split_once(':') else {
            return finish(
                reply(
                    StatusCode::BAD_REQUEST,
                    TEXT,
                    format!("bad header parameter {v:?}: expected Name:value\n"),
                ),
                parts,
                info,
                resolution,
            );
        };
        match (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                resp.headers_mut().append(n, v);
            }
            _ => {
                return finish(
                    reply(
                        StatusCode::BAD_REQUEST,
                        TEXT,
                        format!("bad header parameter {v:?}\n"),
                    ),
                    parts,
                    info,
                    resolution,
                )
            }
        }
    }
    finish(resp, parts, info, resolution)
}

/// What the log line needs, taken before the request is consumed.
struct LogParts {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    started: std::time::Instant,
}

/// `-` for nothing; formatted only when the log event is enabled.
pub(crate) struct OrDash<T>(pub(crate) Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// One log event per request: peer, resolved client, source, status.
fn finish(
    resp: Response<Payload>,
    p: Option<&LogParts>,
    info: &ConnInfo,
    res: &realip_core::Resolution,
) -> Response<Payload> {
    if let Some(p) = p {
        tracing::info!(
            peer = %info.peer,
            client = %OrDash(res.client.as_ref()),
            source = %OrDash(res.client.as_ref().map(|c| &c.source)),
            status = resp.status().as_u16(),
            method = %p.method,
            path = %p.uri.path(),
            version = ?p.version,
            micros = p.started.elapsed().as_micros() as u64,
            "request"
        );
    }
    resp
}

async fn health<B>(req: Request<B>, state: &State) -> Response<Payload>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match *req.method() {
        Method::GET | Method::HEAD => {
            let code = state.health.load(Ordering::Relaxed);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            reply(status, TEXT, Bytes::new())
        }
        Method::POST => {
            let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await;
            let bytes = match body {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        TEXT,
                        format!("body over {MAX_BODY} bytes\n"),
                    );
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            match text
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
            {
                Some(code) => {
                    state.health.store(code, Ordering::Relaxed);
                    tracing::info!(status = code, "health status set");
                    reply(StatusCode::OK, TEXT, Bytes::new())
                }
                None => reply(
                    StatusCode::BAD_REQUEST,
                    TEXT,
                    format!("{:?} is not a status code from 100 to 599\n", text.trim()),
                ),
            }
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, Bytes::new()),
    }
}

fn data(size: Option<&str>, unit: Option<&str>) -> Response<Payload> {
    let n: u64 = match size.map(str::parse) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                "size must be a whole number\n",
            )
        }
    };
    let mult: u64 = match unit.map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("B") => 1,
        Some("KB") => 1 << 10,
        Some("MB") => 1 << 20,
        Some("GB") => 1 << 30,
        Some(u) => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("unit {u:?} is not B, KB, MB or GB\n"),
            )
        }
    };
    let total = match n.checked_mul(mult) {
        Some(t) if t <= MAX_DATA => t,
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("size over {MAX_DATA} bytes\n"),
            )
        }
    };
    // Printable, and recognisable when a truncation is looked at by eye.
    let chunk: Bytes = (0..64 * 1024)
        .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[i % 36])
        .collect::<Vec<u8>>()
        .into();
    let mut r = Response::new(Payload::Repeat { left: total, chunk });
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration("99999999999h"), None);
    }

    #[test]
    fn queries() {
        let q = query_pairs(Some("header=X-A:b%20c&env=true&x"));
        assert_eq!(q[0], ("header".into(), "X-A:b c".into()));
        assert_eq!(q[1], ("env".into(), "true".into()));
        assert_eq!(q[2], ("x".into(), "".into()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
