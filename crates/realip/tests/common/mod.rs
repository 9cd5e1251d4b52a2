//! Test harness: runs the real `realip` binary the way a user would, and
//! talks to it over real loopback sockets from chosen source addresses.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A fresh scratch directory under the system temp dir, unique per call.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "realip-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `realip whoami`, killed (by its own PID) when dropped.
pub struct Whoami {
    pub child: Child,
    pub http: SocketAddr,
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub logs: mpsc::Receiver<String>,
}

impl Drop for Whoami {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["fields"][key].as_str()?.parse().ok()
}

/// Start `realip ARGS` (with `--log-format json`), collect its stderr
/// lines, and wait up to 10 s for its "listening" line. Returns the child,
/// that line, and the rest of the log.
pub fn spawn_listening(args: &[&str]) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_realip"))
        .args(args)
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start realip");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("realip did not report listening within 10s (args {args:?})");
        };
        if line.contains("\"listening\"") {
            return (child, line, rx);
        }
    }
}

/// The first JSON log event with `message`, waiting up to 5 s for it
/// (events may trail the answer the client saw).
pub fn event(logs: &mpsc::Receiver<String>, message: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = logs.recv_timeout(left) else {
            panic!("no {message:?} event within 5s");
        };
        if let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) {
            if e["fields"]["message"] == message {
                return e;
            }
        }
    }
}

/// Start whoami on loopback ports the kernel picks; wait for "listening".
/// `args` may name its own `--listen` (a distinct 127.0.0.x per backend).
pub fn whoami(args: &[&str]) -> Whoami {
    let mut all = vec!["whoami"];
    if !args.contains(&"--listen") {
        all.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    }
    all.extend_from_slice(args);
    let (mut child, line, logs) = spawn_listening(&all);
    let Some(http) = field(&line, "http") else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no http address in the listening line: {line}");
    };
    Whoami {
        child,
        http,
        tcp: field(&line, "tcp"),
        udp: field(&line, "udp"),
        logs,
    }
}

impl Whoami {
    /// Log lines so far (non-blocking).
    pub fn drain_logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }
}

/// A TCP connection from `src` (e.g. 127.0.0.2) to `dst`.
pub async fn connect_from(src: &str, dst: SocketAddr) -> tokio::net::TcpStream {
    let src: IpAddr = src.parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(src, 0)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), sock.connect(dst))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Send raw bytes and read until the server closes (or 5 s pass).
pub async fn raw_exchange(stream: &mut tokio::net::TcpStream, send: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.write_all(send).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    out
}

/// One HTTP/1.1 request over a fresh connection from `src`; returns status,
/// headers and body.
pub async fn get_from(
    src: &str,
    dst: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let stream = connect_from(src, dst).await;
    http1_over(stream, "GET", path, headers, "").await
}

/// One HTTP/1.1 request over any stream.
pub async fn http1_over<S>(
    stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Full};
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "whoami.test");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("response timed out")
        .expect("response");
    let status = resp.status().as_u16();
    let hm = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, hm, String::from_utf8_lossy(&body).into_owned())
}

/// One h2 request (prior knowledge, or after TLS ALPN) over any stream.
pub async fn h2_over<S>(stream: S, path: &str, headers: &[(&str, &str)]) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Empty};
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder().uri(format!("http://whoami.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("h2 response timed out")
        .expect("h2 response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Parse a JSON body.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A child process we started, killed by its own PID when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether namespace tests can run here. With REALIP_REQUIRE_NETNS=1 (CI)
/// a missing capability panics instead of skipping; `extra` adds a
/// requirement of the caller's (e.g. the nft binary).
pub fn netns_supported(extra: Result<(), String>) -> bool {
    let ns = realip_lab::topology::check_support().map_err(|e| e.to_string());
    match ns.and(extra) {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("REALIP_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
                panic!("{why} (REALIP_REQUIRE_NETNS=1)");
            }
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// A test CA, a server certificate for whoami.test (cert.pem, key.pem,
/// ca.pem in `dir`) and a client certificate.
pub struct Pki {
    pub dir: std::path::PathBuf,
    pub ca_pem: String,
    pub client_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub client_key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Make the PKI.
pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = scratch("tls");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "realip test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let srv_key = KeyPair::generate().unwrap();
    let srv = CertificateParams::new(vec!["whoami.test".to_string()])
        .unwrap()
        .signed_by(&srv_key, &ca, &ca_key)
        .unwrap();
    let cli_key = KeyPair::generate().unwrap();
    let mut cli_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    cli_params
        .distinguished_name
        .push(DnType::CommonName, "client-a");
    let cli = cli_params.signed_by(&cli_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), srv.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), srv_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_chain: vec![cli.der().clone()],
        client_key: rustls_pki_types::PrivateKeyDer::try_from(cli_key.serialize_der()).unwrap(),
    }
}

/// TLS to `dst` as whoami.test, trusting the test CA, offering `alpn`.
pub async fn tls_connect(
    pki: &Pki,
    dst: std::net::SocketAddr,
    client_cert: bool,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = if client_cert {
        b.with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key())
            .unwrap()
    } else {
        b.with_no_client_auth()
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = connect_from("127.0.0.1", dst).await;
    let name = rustls_pki_types::ServerName::try_from("whoami.test").unwrap();
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    // TLS 1.3 reports a rejected client certificate only on the first read.
    Ok(s)
}

/// `realip ARGS` inside a namespace, killed by its PID when dropped.
pub fn spawn_in(ns: &str, args: &[&str]) -> Killed {
    Killed(
        Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_realip")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// One HTTP/1.0 GET from inside a host's namespace, with a deadline;
/// returns the whole response ("" on timeout or refusal).
pub fn get(
    lab: &realip_lab::topology::Lab,
    from: &realip_lab::topology::Role,
    addr: &str,
    path: &str,
    secs: u32,
) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = lab
        .exec(from, &["timeout", &secs.to_string(), "bash", "-c", &script])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where a Debian peer (nginx, haproxy) is installed; a missing one fails
/// the test rather than skipping it (`scripts/test` installs them).
pub fn installed(bin: &str) -> std::path::PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = std::path::Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is not installed: run scripts/test (it installs nginx and haproxy)");
}
