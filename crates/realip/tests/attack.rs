//! The attack suite (issue 10): `realip lb --mode http` played against as
//! an attacker would, with the same vectors sent to nginx 1.22 and HAProxy
//! 2.6 configured as ingresses, and a side-by-side table printed.
//!
//! Every vector ([`vectors`]) is raw bytes from a client on 127.0.0.3 (not
//! trusted) to a proxy listener, with a raw backend behind it (a TCP
//! listener of our own that records every byte per connection, parses what
//! arrives with the strict parser of [`wire`], and answers a script: a
//! plain 200, a 101, or crafted response bytes). What the backend and the
//! client really received is judged; the proxy's own code is never used to
//! read anything.
//!
//! For realip each vector's RFC expectation is asserted, and on every
//! vector: nothing smuggled, no forged address (1.2.3.4) in a header that
//! normalises to a forwarding one, no bytes meant for nobody (POISON) at a
//! client, no framing the strict parser cannot read. nginx and HAProxy are
//! only shown, except for the comparison rule: where both refuse and realip
//! accepts, the test fails unless the vector is in [`DELIBERATE`].
//!
//! The peers are required: `scripts/test` installs them; a missing one
//! fails, as in interop.rs. Everything listens on 127.0.0.0/8; every
//! process is ours and stopped by its PID.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;
#[path = "attack/vectors.rs"]
mod vectors;
#[path = "attack/wire.rs"]
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use wire::{Head, Resp};

/// The attacker's address (no proxy trusts it).
pub const CLIENT: &str = "127.0.0.3";
/// The forged client address every vector tries to slip through.
pub const FORGED: &str = "1.2.3.4";
/// Bytes a backend sends that are a response for nobody: no client may
/// ever read them.
pub const POISON: &str = "POISON";

/// A client read ends after this long with nothing new.
const SILENCE: Duration = Duration::from_millis(700);
/// The longest any one client read may take.
const READ_CAP: Duration = Duration::from_secs(6);
/// Vector runs at once (2 shared cores: enough to overlap the waits).
const PARALLEL: usize = 48;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    H1,
    H2c,
    H2Tls,
}

/// What a client does, in order, on its one connection.
pub enum Step {
    Send(Vec<u8>),
    /// Read until the server is quiet, then go on.
    Await,
}

pub struct Client {
    /// Wait this long after the previous client finished.
    pub delay_ms: u64,
    pub steps: Vec<Step>,
    /// Its requests are HEAD (responses have no body).
    pub head: bool,
}

/// How the raw backend answers each request it parsed.
#[derive(Clone)]
pub enum Script {
    /// 200 with `Content-Length: 2` "ok"; 101 to a WebSocket upgrade
    /// (then the connection is a tunnel).
    Ok,
    /// 101 to any Upgrade (a backend that would speak h2c).
    Upgrade101,
    /// 200 to everything, upgrades included.
    NoUpgrade,
    /// `first` to a connection's first request, `rest` to later ones;
    /// `later` written 50 ms after `first`; `close` after each answer.
    Raw {
        first: Vec<u8>,
        rest: Vec<u8>,
        later: Option<Vec<u8>>,
        close: bool,
    },
}

/// The RFC-correct outcome for realip.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Refused with one of these statuses (h2: or a stream/connection
    /// error); nothing reaches the backend; an h1 connection is closed
    /// after the one answer.
    Refuse(&'static [u16]),
    /// Forwarded: the backend sees exactly N requests, the client gets N
    /// 2xx.
    Fwd(usize),
    /// Refused as [`Expect::Refuse`] with any 4xx/5xx, or forwarded as
    /// 1..=N requests, each answered 2xx.
    RefuseOrFwd(usize),
    /// Response side: the client gets a 502.
    Bad502,
    /// Response side: a 502, or a response cut short and the connection
    /// closed; never a complete one.
    BadOrCut,
    /// Response side: this status, complete.
    RespOk(u16),
    /// Response side: this status complete, or a 502, or a response cut
    /// short by a close.
    RespOkOr502(u16),
    /// Only the invariants.
    Any,
}

pub type Check = Box<dyn Fn(&Obs) -> Result<(), String> + Send + Sync>;

pub struct Vector {
    pub name: String,
    pub source: &'static str,
    pub class: &'static str,
    pub transport: Transport,
    pub clients: Vec<Client>,
    pub script: Script,
    pub expect: Expect,
    pub check: Option<Check>,
}

/// Vectors where realip accepts although nginx and HAProxy both refuse,
/// on purpose, with the RFC argument.
pub const DELIBERATE: &[(&str, &str)] = &[];

/// Vectors where realip does not reach the vector's expectation, kept with
/// exactly what realip does instead and why that is safe: the test fails
/// if realip does anything else (better or worse), so the entry goes when
/// the gap closes. All three are hyper's leniency on the hyper path, where
/// hyper decodes a chunked body and writes a new one: the bytes a lenient
/// reader could split at never travel on.
pub const KNOWN_LIMITS: &[(&str, &str, &str)] = &[
    (
        "chunk ext NUL",
        "fwd2 200,200 open AFTER",
        "hyper ignores chunk extensions (RFC 9112 §7.1.1 tells a recipient to) without checking their bytes; \
         the body goes on re-chunked without it, so the backend never sees the NUL; nginx and HAProxy accept it too",
    ),
    (
        "trailer bare LF",
        "fwd1 200 open",
        "hyper reads the trailer section up to the next CRLF CRLF, taking the pipelined request with it: that \
         client's own bytes, never another client's; no trailer goes on, so nothing reaches the backend unframed",
    ),
    (
        "resp trailer bare LF (hyper)",
        "fwd2 200cut open | 200 open",
        "hyper waits for the trailer's CRLF CRLF, so the client holds a chunked body without its last chunk until \
         the backend closes or the 75 s idle timer does; the bare LF never reaches the client (hyper re-chunks)",
    ),
];

// ------------------------------------------------------------ observations

#[derive(Debug, Clone)]
pub struct BReq {
    pub head: Head,
    pub method: String,
    pub target: String,
    pub body: Vec<u8>,
}

/// One connection the raw backend accepted.
#[derive(Debug, Clone, Default)]
pub struct BConn {
    pub bytes: Vec<u8>,
    pub reqs: Vec<BReq>,
    /// What the strict parser refused in what the proxy sent.
    pub bad: Option<String>,
    /// A 101 was sent: what follows is a tunnel.
    pub tunnel: bool,
    /// Bytes arrived after the 101.
    pub tunnel_bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct CObs {
    pub raw: Vec<u8>,
    pub closed: bool,
    pub connect_error: Option<String>,
    pub resps: Vec<Resp>,
    pub parse_error: Option<String>,
    pub h2: Option<wire::H2Seen>,
}

#[derive(Debug, Clone)]
pub struct Obs {
    pub transport: Transport,
    pub backend: Vec<BConn>,
    pub clients: Vec<CObs>,
}

impl Obs {
    pub fn reqs(&self) -> impl Iterator<Item = &BReq> {
        self.backend.iter().flat_map(|c| c.reqs.iter())
    }

    pub fn nreq(&self) -> usize {
        self.reqs().count()
    }

    /// Final statuses a client got (h1: >= 200; h2: stream 1's, or 0 for
    /// a reset stream or a GOAWAY without one).
    pub fn finals(&self, client: usize) -> Vec<u16> {
        let c = &self.clients[client];
        match &c.h2 {
            None => c
                .resps
                .iter()
                .filter(|r| r.status >= 200)
                .map(|r| r.status)
                .collect(),
            Some(h) => {
                let mut s = h.statuses.get(&1).cloned().unwrap_or_default();
                if s.is_empty() && (h.rst.contains_key(&1) || h.goaway.is_some()) {
                    s.push(0);
                }
                s
            }
        }
    }

    /// The first final response of a client, when complete.
    pub fn first_complete(&self, client: usize) -> Option<u16> {
        let c = &self.clients[client];
        match &c.h2 {
            None => c
                .resps
                .iter()
                .find(|r| r.status >= 200)
                .filter(|r| r.complete)
                .map(|r| r.status),
            Some(h) => h
                .statuses
                .get(&1)
                .and_then(|s| s.first().copied())
                .filter(|_| h.ended.contains(&1) && !h.rst.contains_key(&1)),
        }
    }

    /// The request hidden after a body reached the backend as the
    /// attacker wrote it (its forged XFF intact: nobody rewrote it).
    pub fn smuggled(&self) -> bool {
        self.reqs().any(|r| {
            r.target.contains("smuggled")
                && r.head
                    .all("x-forwarded-for")
                    .iter()
                    .any(|v| wire::lossy(v).contains(FORGED))
        })
    }

    /// The request hidden after a body was served, rewritten: the proxy
    /// read the body differently than its framing allowed, or kept
    /// reading after a message it must have refused or closed on.
    pub fn served_after(&self) -> bool {
        self.reqs().any(|r| r.target.contains("smuggled"))
    }

    /// A forged address in a header whose name, lowercased with `_` read
    /// as `-`, is a forwarding one.
    pub fn forged(&self) -> Option<String> {
        self.reqs()
            .flat_map(|r| r.head.fields.iter())
            .find(|(n, v)| forwarding_like(n) && wire::lossy(v).contains(FORGED))
            .map(|(n, v)| format!("{n}: {}", wire::lossy(v)))
    }

    pub fn poisoned(&self) -> bool {
        self.clients
            .iter()
            .any(|c| c.raw.windows(POISON.len()).any(|w| w == POISON.as_bytes()))
    }

    pub fn tunnel(&self) -> bool {
        self.backend.iter().any(|c| c.tunnel && c.tunnel_bytes > 0)
    }

    pub fn bad_fwd(&self) -> Option<&str> {
        self.backend
            .iter()
            .find(|c| !c.tunnel)
            .and_then(|c| c.bad.as_deref())
    }

    /// The comparison rule's "accepted": something reached the backend and
    /// the client's first answer is a complete non-error one.
    pub fn accepted(&self) -> bool {
        self.nreq() > 0 && self.first_complete(0).is_some_and(|s| s < 400)
    }
}

pub fn forwarding_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    n == "forwarded"
        || n.starts_with("x-forwarded")
        || n == "x-real-ip"
        || n == "x-original-uri"
        || n == "x-scheme"
        || n == "x-request-id"
        || n == "x-original-forwarded-for"
}

/// A short cell: `fwd2 200,200 open`, `400 close`, `RST`, with flags.
fn cell(o: &Obs) -> String {
    let mut parts = Vec::new();
    for (i, c) in o.clients.iter().enumerate() {
        if let Some(e) = &c.connect_error {
            parts.push(format!("NOCONN({e})"));
            continue;
        }
        let s = match &c.h2 {
            Some(h) => {
                let mut s: Vec<String> = o
                    .finals(i)
                    .iter()
                    .filter(|&&x| x != 0)
                    .map(|x| x.to_string())
                    .collect();
                if h.rst.contains_key(&1) {
                    s.push("RST".into());
                }
                if h.goaway.is_some_and(|g| g != 0) || (h.goaway.is_some() && s.is_empty()) {
                    s.push("GOAWAY".into());
                }
                if s.is_empty() {
                    "-".into()
                } else {
                    s.join(" ")
                }
            }
            None => {
                let st: Vec<String> = c
                    .resps
                    .iter()
                    .map(|r| format!("{}{}", r.status, if r.complete { "" } else { "cut" }))
                    .collect();
                let st = if st.is_empty() {
                    "-".to_string()
                } else {
                    st.join(",")
                };
                format!("{st} {}", if c.closed { "close" } else { "open" })
            }
        };
        parts.push(s);
    }
    let mut out = parts.join(" | ");
    if o.nreq() > 0 {
        out = format!("fwd{} {out}", o.nreq());
    }
    if o.tunnel() {
        out.push_str(" TUNNEL");
    }
    if o.smuggled() {
        out.push_str(" SMUGGLED");
    } else if o.served_after() {
        out.push_str(" AFTER");
    }
    if o.forged().is_some() {
        out.push_str(" FORGED");
    }
    if o.poisoned() {
        out.push_str(" POISON");
    }
    if o.bad_fwd().is_some() {
        out.push_str(" BADFWD");
    }
    if o.clients
        .iter()
        .any(|c| c.parse_error.is_some() && c.h2.is_none())
    {
        out.push_str(" AMBIG");
    }
    out
}

// ---------------------------------------------------------------- judging

fn refused(o: &Obs, allowed: &[u16]) -> Result<(), String> {
    if o.nreq() > 0 {
        return Err(format!("{} request(s) reached the backend", o.nreq()));
    }
    let c = &o.clients[0];
    let finals = o.finals(0);
    let ok_status = |s: u16| {
        if allowed.is_empty() {
            (400..600).contains(&s)
        } else {
            allowed.contains(&s)
        }
    };
    match &c.h2 {
        Some(h) => {
            let stream_error = h.rst.contains_key(&1) || h.goaway.is_some();
            if !(stream_error || finals.iter().any(|&s| ok_status(s))) {
                return Err(format!("no refusal on the stream (statuses {finals:?})"));
            }
        }
        None => {
            if finals.first().is_none_or(|&s| !ok_status(s)) {
                return Err(format!("got {finals:?}, wanted one of {allowed:?}"));
            }
            if finals.len() > 1 {
                return Err(format!("{} responses after a refusal", finals.len()));
            }
            if !c.closed {
                return Err(format!("connection left open after {}", finals[0]));
            }
        }
    }
    Ok(())
}

fn forwarded(o: &Obs, max: usize, exact: bool) -> Result<(), String> {
    let n = o.nreq();
    if n == 0 || n > max || (exact && n != max) {
        return Err(format!(
            "backend saw {n} request(s), wanted {}{max}",
            if exact { "" } else { "1..=" }
        ));
    }
    let finals = o.finals(0);
    if finals.len() < n.min(if o.transport == Transport::H1 { n } else { 1 })
        || finals.iter().any(|&s| !(200..300).contains(&s))
    {
        return Err(format!("client got {finals:?}"));
    }
    Ok(())
}

/// What realip did wrong on `v`, if anything.
fn judge(v: &Vector, o: &Obs) -> Vec<String> {
    let mut why = Vec::new();
    if o.smuggled() {
        why.push(
            "SMUGGLED: the backend served a request hidden in the body or after the end"
                .to_string(),
        );
    }
    if let Some(f) = o.forged() {
        why.push(format!("FORGED at the backend: {f}"));
    }
    if o.poisoned() {
        why.push("POISON: a client read bytes meant as a response for nobody".into());
    }
    if let Some(b) = o.bad_fwd() {
        why.push(format!(
            "BADFWD: the backend's strict parser refused what was forwarded: {b}"
        ));
    }
    for (i, c) in o.clients.iter().enumerate() {
        if c.h2.is_none() {
            if let Some(e) = &c.parse_error {
                why.push(format!("AMBIG: client {i}'s strict parser: {e}"));
            }
        }
    }
    let r = match v.expect {
        Expect::Refuse(s) => refused(o, s),
        Expect::Fwd(n) => forwarded(o, n, true),
        Expect::RefuseOrFwd(n) => {
            if o.nreq() == 0 {
                refused(o, &[])
            } else {
                forwarded(o, n, false)
            }
        }
        Expect::Bad502 => match o.finals(0).first() {
            Some(502) => Ok(()),
            s => Err(format!("client got {s:?}, wanted 502")),
        },
        Expect::BadOrCut => {
            let finals = o.finals(0);
            let cut = o.first_complete(0).is_none() && o.clients[0].closed;
            if finals.first() == Some(&502) || cut {
                Ok(())
            } else {
                Err(format!(
                    "client got {:?} complete={:?} closed={}, wanted a 502, or a cut and a close",
                    o.finals(0),
                    o.first_complete(0),
                    o.clients[0].closed
                ))
            }
        }
        Expect::RespOk(s) => match o.first_complete(0) {
            Some(x) if x == s => Ok(()),
            x => Err(format!("client got {x:?}, wanted a complete {s}")),
        },
        Expect::RespOkOr502(s) => match (o.first_complete(0), o.finals(0).first()) {
            (Some(x), _) if x == s => Ok(()),
            (_, Some(502)) => Ok(()),
            // A body cut off by a close cannot be misread either.
            (None, Some(_)) if o.clients[0].closed => Ok(()),
            (x, _) => Err(format!("client got {x:?}, wanted a complete {s} or 502")),
        },
        Expect::Any => Ok(()),
    };
    if let Err(e) = r {
        why.push(format!("{:?}: {e}", v.expect));
    }
    if let Some(check) = &v.check {
        if let Err(e) = check(o) {
            why.push(e);
        }
    }
    why
}

// ------------------------------------------------------------ raw backend

pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// A 101 to `token`, with the accept key of RFC 6455's example nonce
/// (the one the vectors send).
fn switch_to(token: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: {token}\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    .into_bytes()
}

fn has_token(h: &Head, name: &str, token: &str) -> bool {
    h.all(name).iter().any(|v| {
        wire::lossy(v)
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// Parse one complete request at `buf[at..]`.
fn backend_request(buf: &[u8], at: usize) -> Result<Option<(BReq, usize)>, String> {
    let Some((head, n)) = wire::head(&buf[at..])? else {
        return Ok(None);
    };
    let (method, target, _) = wire::request_line(&head.start)?;
    let body_at = at + n;
    let (body, end) = match wire::request_framing(&head)? {
        wire::Framing::Empty | wire::Framing::Close => (Vec::new(), body_at),
        wire::Framing::Length(l) => {
            if buf.len() < body_at + l {
                return Ok(None);
            }
            (buf[body_at..body_at + l].to_vec(), body_at + l)
        }
        wire::Framing::Chunked => match wire::chunked(buf, body_at)? {
            Some(x) => x,
            None => return Ok(None),
        },
    };
    Ok(Some((
        BReq {
            head,
            method,
            target,
            body,
        },
        end,
    )))
}

async fn backend_conn(
    mut s: TcpStream,
    script: Arc<Script>,
    log: Arc<Mutex<Vec<BConn>>>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) {
    let me = {
        let mut l = log.lock().unwrap();
        l.push(BConn::default());
        l.len() - 1
    };
    let mut buf = Vec::new();
    let mut at = 0;
    let mut tmp = vec![0u8; 16384];
    loop {
        let n = match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        let tunnel = {
            let mut l = log.lock().unwrap();
            let c = &mut l[me];
            c.bytes.extend_from_slice(&tmp[..n]);
            if c.tunnel {
                c.tunnel_bytes += n;
            }
            c.tunnel
        };
        loop {
            match backend_request(&buf, at) {
                Ok(None) => break,
                Err(e) => {
                    let mut l = log.lock().unwrap();
                    if l[me].bad.is_none() {
                        l[me].bad = Some(e);
                    }
                    drop(l);
                    if !tunnel {
                        return;
                    }
                    at = buf.len();
                    break;
                }
                Ok(Some((req, end))) => {
                    at = end;
                    let upgrade = req.head.all("upgrade").first().map(|v| wire::lossy(v));
                    let conn_upgrade = has_token(&req.head, "connection", "upgrade");
                    let (answer, later, close, switch): (&[u8], Option<&[u8]>, bool, bool) =
                        match &*script {
                            Script::Ok
                                if upgrade
                                    .as_deref()
                                    .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
                                    && conn_upgrade =>
                            {
                                (&[], None, false, true)
                            }
                            Script::Upgrade101 if upgrade.is_some() => (&[], None, false, true),
                            Script::Ok | Script::Upgrade101 | Script::NoUpgrade => {
                                (OK, None, false, false)
                            }
                            Script::Raw {
                                first,
                                rest,
                                later,
                                close,
                            } => {
                                if answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                                    (first, later.as_deref(), *close, false)
                                } else {
                                    (rest, None, *close, false)
                                }
                            }
                        };
                    log.lock().unwrap()[me].reqs.push(req);
                    let answer = if switch {
                        switch_to(upgrade.as_deref().unwrap_or("websocket"))
                    } else {
                        answer.to_vec()
                    };
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                    if let Some(l) = later {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = s.write_all(l).await;
                    }
                    if switch {
                        log.lock().unwrap()[me].tunnel = true;
                    }
                    if close {
                        let _ = s.shutdown().await;
                        return;
                    }
                }
            }
        }
    }
}

/// A raw backend on `ip`: its address and its log.
async fn raw_backend(ip: &str, script: Script) -> (SocketAddr, Arc<Mutex<Vec<BConn>>>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (script, log2) = (Arc::new(script), log.clone());
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(backend_conn(
                s,
                script.clone(),
                log2.clone(),
                answered.clone(),
            ));
        }
    });
    (addr, log)
}

// ------------------------------------------------------------------ client

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Read until the peer closes or is quiet for `silence`; true if closed.
async fn read_quiet(
    s: &mut (impl AsyncRead + Unpin),
    out: &mut Vec<u8>,
    silence: Duration,
) -> bool {
    let start = Instant::now();
    let mut tmp = vec![0u8; 16384];
    while start.elapsed() < READ_CAP {
        match tokio::time::timeout(silence, s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
            Err(_) => return false,
        }
    }
    false
}

async fn run_client(
    t: Transport,
    addr: SocketAddr,
    tls: &Arc<tokio_rustls::rustls::ClientConfig>,
    c: &Client,
) -> CObs {
    let mut o = CObs::default();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(CLIENT.parse().unwrap(), 0))
        .unwrap();
    let tcp = match tokio::time::timeout(Duration::from_secs(5), sock.connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            o.connect_error = Some(e.kind().to_string());
            return o;
        }
        Err(_) => {
            o.connect_error = Some("timeout".into());
            return o;
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut s: Box<dyn Io> = if t == Transport::H2Tls {
        let name = rustls_pki_types::ServerName::try_from("whoami.test").unwrap();
        match tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
        {
            Ok(s) => Box::new(s),
            Err(e) => {
                o.connect_error = Some(format!("tls: {e}"));
                return o;
            }
        }
    } else {
        Box::new(tcp)
    };
    for step in &c.steps {
        match step {
            Step::Send(b) => {
                if s.write_all(b).await.is_err() || s.flush().await.is_err() {
                    o.closed = true;
                    break;
                }
            }
            Step::Await => {
                if read_quiet(&mut s, &mut o.raw, Duration::from_millis(300)).await {
                    o.closed = true;
                    break;
                }
            }
        }
    }
    if !o.closed {
        o.closed = read_quiet(&mut s, &mut o.raw, SILENCE).await;
    }
    if t == Transport::H1 {
        let (r, e) = wire::responses(&o.raw, c.head, o.closed);
        o.resps = r;
        o.parse_error = e;
    } else {
        let h = wire::h2_read(&o.raw);
        o.parse_error = h.error.clone();
        o.h2 = Some(h);
    }
    o
}

// ------------------------------------------------------------------ proxies

/// A proxy process we started, stopped by its own PID when dropped.
struct Peer {
    child: Child,
    name: &'static str,
    /// Where its own complaints go, shown when it fails to start.
    log: Option<PathBuf>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct addresses on `ip` that were free a moment ago (all bound
/// at once, so the kernel cannot hand out one twice).
fn free_addrs(ip: &str, n: usize) -> Vec<SocketAddr> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind((ip, 0)).unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn wait_listening(peer: &mut Peer, addrs: &[SocketAddr]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for a in addrs {
        loop {
            if std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = peer.child.try_wait() {
                let why = peer
                    .log
                    .as_ref()
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .unwrap_or_default();
                panic!("{} exited early: {st}\n{why}", peer.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {a}",
                peer.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The three proxies under test, in table order.
const PROXIES: [(&str, &str, &str); 3] = [
    ("realip", "127.0.0.20", "127.0.0.30"),
    ("nginx", "127.0.0.21", "127.0.0.31"),
    ("haproxy", "127.0.0.22", "127.0.0.32"),
];

fn start_realip(
    dir: &Path,
    pki: &Path,
    vs: &[Vector],
    listen: &[SocketAddr],
    backends: &[SocketAddr],
) -> Peer {
    let mut y = String::from("pools:\n");
    for (i, b) in backends.iter().enumerate() {
        y.push_str(&format!("  p{i}: {{backends: [\"{b}\"]}}\n"));
    }
    y.push_str("listeners:\n");
    for (i, (v, l)) in vs.iter().zip(listen).enumerate() {
        y.push_str(&format!(
            "  - {{name: v{i}, mode: http, listen: \"{l}\", routes: [{{path: /, pool: p{i}}}], response_timeout: 3s, retries: 0"
        ));
        if v.transport == Transport::H2Tls {
            y.push_str(&format!(
                ", tls: {{cert: {0}/cert.pem, key: {0}/key.pem}}",
                pki.display()
            ));
        }
        y.push_str("}\n");
    }
    let cfg = dir.join("realip.yaml");
    std::fs::write(&cfg, y).unwrap();
    let log = std::fs::File::create(dir.join("realip.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(["lb", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start realip lb");
    Peer {
        child,
        name: "realip",
        log: Some(dir.join("realip.log")),
    }
}

fn start_nginx(
    dir: &Path,
    pki: &Path,
    vs: &[Vector],
    listen: &[SocketAddr],
    backends: &[SocketAddr],
) -> Peer {
    let d = dir.display();
    let p = pki.display();
    let mut servers = String::new();
    for (i, (v, (l, b))) in vs.iter().zip(listen.iter().zip(backends)).enumerate() {
        let flags = match v.transport {
            Transport::H1 => "",
            Transport::H2c => " http2",
            Transport::H2Tls => " ssl http2",
        };
        servers.push_str(&format!(
            "  upstream u{i} {{ server {b}; keepalive 4; }}\n\
             \x20 server {{\n    listen {l}{flags};\n    location / {{\n      proxy_pass http://u{i};\n      proxy_http_version 1.1;\n      proxy_set_header Connection $connection_upgrade;\n      proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $remote_addr;\n      proxy_set_header X-Real-IP $remote_addr;\n      proxy_set_header X-Forwarded-Host $host;\n      proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Port $server_port;\n      proxy_set_header Forwarded \"\";\n    }}\n  }}\n"
        ));
    }
    // As ingress-nginx: an upgrade passes, otherwise Connection is emptied
    // so the upstream keepalive works.
    let cfg = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           proxy_read_timeout 3s;\n  proxy_connect_timeout 2s;\n\
           ssl_certificate {p}/cert.pem;\n  ssl_certificate_key {p}/key.pem;\n\
           map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}\n\
         {servers}}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(common::installed("nginx"))
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Peer {
        child,
        name: "nginx",
        log: Some(dir.join("error.log")),
    }
}

fn start_haproxy(
    dir: &Path,
    pki: &Path,
    vs: &[Vector],
    listen: &[SocketAddr],
    backends: &[SocketAddr],
) -> Peer {
    let pem = dir.join("haproxy.pem");
    let mut both = std::fs::read(pki.join("cert.pem")).unwrap();
    both.extend(std::fs::read(pki.join("key.pem")).unwrap());
    std::fs::write(&pem, both).unwrap();
    let mut cfg = String::from(
        "global\n  maxconn 8192\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 3s\n  timeout http-keep-alive 10s\n",
    );
    for (i, (v, (l, b))) in vs.iter().zip(listen.iter().zip(backends)).enumerate() {
        let (bind, proto) = match v.transport {
            Transport::H1 => (String::new(), "http"),
            Transport::H2c => (" proto h2".to_string(), "http"),
            Transport::H2Tls => (
                format!(" ssl crt {} alpn h2,http/1.1", pem.display()),
                "https",
            ),
        };
        cfg.push_str(&format!(
            "frontend f{i}\n  bind {l}{bind}\n\
             \x20 http-request del-header Forwarded\n\
             \x20 http-request set-header X-Forwarded-For %[src]\n\
             \x20 http-request set-header X-Real-IP %[src]\n\
             \x20 http-request set-header X-Forwarded-Proto {proto}\n\
             \x20 http-request set-header X-Forwarded-Host %[req.hdr(host)]\n\
             \x20 default_backend b{i}\n\
             backend b{i}\n  server s {b}\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(common::installed("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .expect("start haproxy");
    Peer {
        child,
        name: "haproxy",
        log: Some(dir.join("haproxy.log")),
    }
}

fn tls_config(pki: &common::Pki) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}~")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_suite() {
    let started = Instant::now();
    // ATTACK_ONLY=text runs the vectors whose name contains it;
    // ATTACK_DUMP=1 prints everything each proxy's backend and client saw.
    let only = std::env::var("ATTACK_ONLY").ok();
    let dump = std::env::var("ATTACK_DUMP").is_ok();
    let all = vectors::all();
    let total = all.len();
    let mut names: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "vector names must be unique");
    assert!(total >= 120, "only {total} vectors");
    let vs: Vec<Vector> = all
        .into_iter()
        .filter(|v| only.as_ref().is_none_or(|o| v.name.contains(o.as_str())))
        .collect();
    let vs = Arc::new(vs);
    let pki = common::pki();
    let tls = tls_config(&pki);
    let dir = common::scratch("attack");

    // Backends first (their ports are in the configs), one per vector and
    // proxy so that runs can overlap.
    let mut backends = Vec::new(); // [proxy][vector]
    let mut logs = Vec::new();
    for (_, _, bip) in PROXIES {
        let (mut a, mut l) = (Vec::new(), Vec::new());
        for v in vs.iter() {
            let (addr, log) = raw_backend(bip, v.script.clone()).await;
            a.push(addr);
            l.push(log);
        }
        backends.push(a);
        logs.push(l);
    }
    let listen: Vec<Vec<SocketAddr>> = PROXIES
        .iter()
        .map(|(_, ip, _)| free_addrs(ip, vs.len()))
        .collect();
    let mut peers = vec![
        start_realip(&dir, &pki.dir, &vs, &listen[0], &backends[0]),
        start_nginx(&dir, &pki.dir, &vs, &listen[1], &backends[1]),
        start_haproxy(&dir, &pki.dir, &vs, &listen[2], &backends[2]),
    ];
    for (p, l) in peers.iter_mut().zip(&listen) {
        wait_listening(p, l);
    }
    let ready = started.elapsed();

    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for vi in 0..vs.len() {
        for pi in 0..PROXIES.len() {
            let (vs, sem, tls, log) = (vs.clone(), sem.clone(), tls.clone(), logs[pi][vi].clone());
            let addr = listen[pi][vi];
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                let v = &vs[vi];
                let mut clients = Vec::new();
                for c in &v.clients {
                    tokio::time::sleep(Duration::from_millis(c.delay_ms)).await;
                    clients.push(run_client(v.transport, addr, &tls, c).await);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let backend = log.lock().unwrap().clone();
                (
                    vi,
                    pi,
                    Obs {
                        transport: v.transport,
                        backend,
                        clients,
                    },
                )
            }));
        }
    }
    let mut obs: Vec<Vec<Option<Obs>>> = vs.iter().map(|_| vec![None, None, None]).collect();
    for t in tasks {
        let (vi, pi, o) = t.await.unwrap();
        obs[vi][pi] = Some(o);
    }
    let obs: Vec<Vec<Obs>> = obs
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect())
        .collect();
    drop(peers);

    // The table.
    let rows: Vec<[String; 5]> = vs
        .iter()
        .zip(&obs)
        .map(|(v, o)| {
            [
                v.name.clone(),
                v.source.to_string(),
                cell(&o[0]),
                cell(&o[1]),
                cell(&o[2]),
            ]
        })
        .collect();
    let widths = [58, 30, 34, 34, 34];
    let head = ["vector", "source", "realip", "nginx", "haproxy"];
    let fmt = |r: &[String; 5]| {
        r.iter()
            .zip(widths)
            .map(|(c, w)| format!("{:<w$}", trunc(c, w)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("\n{}", fmt(&head.map(String::from)));
    println!("{}", "-".repeat(widths.iter().sum::<usize>() + 12));
    for r in &rows {
        println!("{}", fmt(r));
    }

    // realip's verdicts, and the comparison rule.
    let mut failed = Vec::new();
    let mut rule = Vec::new();
    let mut not_run = Vec::new();
    for (v, o) in vs.iter().zip(&obs) {
        let mut why = judge(v, &o[0]);
        if let Some((_, did, _)) = KNOWN_LIMITS.iter().find(|(n, _, _)| *n == v.name) {
            let seen = cell(&o[0]);
            why = if seen == *did {
                Vec::new()
            } else {
                vec![format!("a known limit, written down as {did:?}, now does {seen:?}: update KNOWN_LIMITS")]
            };
        }
        if !why.is_empty() {
            failed.push((v, why));
        }
        if o[0].accepted()
            && !o[1].accepted()
            && !o[2].accepted()
            && !DELIBERATE.iter().any(|(n, _)| *n == v.name)
        {
            rule.push(v.name.clone());
        }
        for (pi, po) in o.iter().enumerate() {
            if let Some(e) = po.clients.iter().find_map(|c| c.connect_error.as_ref()) {
                not_run.push(format!("{} on {}: {e}", v.name, PROXIES[pi].0));
            }
        }
    }
    let mut by_class = std::collections::BTreeMap::<&str, usize>::new();
    for v in vs.iter() {
        *by_class.entry(v.class).or_default() += 1;
    }
    println!(
        "\n{} vectors: {by_class:?}; proxies ready in {ready:.1?}, all done in {:.1?}",
        vs.len(),
        started.elapsed()
    );
    println!("\nrealip FAILS {} vector(s):", failed.len());
    for (v, why) in &failed {
        println!(
            "  {} [{}] ({}): realip did {}",
            v.name,
            v.class,
            v.source,
            cell(&obs[vs.iter().position(|x| x.name == v.name).unwrap()][0])
        );
        for w in why {
            println!("      - {w}");
        }
    }
    println!("\ncomparison rule (nginx and HAProxy refuse, realip accepts): {rule:?}");
    println!("\nknown limits (realip's outcome pinned, with why it is safe):");
    for (n, did, why) in KNOWN_LIMITS {
        println!("  {n}: {did}\n      {why}");
    }
    if dump {
        for (v, o) in vs.iter().zip(&obs) {
            for (pi, po) in o.iter().enumerate() {
                println!("\n== {} on {}", v.name, PROXIES[pi].0);
                for (i, c) in po.backend.iter().enumerate() {
                    println!(
                        "  backend conn {i} (bad {:?}): {:?}",
                        c.bad,
                        wire::lossy(&c.bytes)
                    );
                }
                for (i, c) in po.clients.iter().enumerate() {
                    println!(
                        "  client {i} (closed {}): {:?}",
                        c.closed,
                        wire::lossy(&c.raw)
                    );
                }
            }
        }
        println!("scratch dir kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        not_run.is_empty(),
        "a proxy was not really run: {not_run:?}"
    );
    assert!(
        failed.is_empty() && rule.is_empty(),
        "realip failed {} vector(s): {:?}; comparison rule: {rule:?}",
        failed.len(),
        failed
            .iter()
            .map(|(v, _)| v.name.as_str())
            .collect::<Vec<_>>()
    );
}
