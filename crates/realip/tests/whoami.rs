//! `realip whoami` end to end: the real binary on loopback, real sockets
//! from two source addresses (127.0.0.1 trusted, 127.0.0.2 not).
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const TRUST: &[&str] = &["--trusted", "127.0.0.1/32"];

fn v2_header(src: &str, dst: &str, dgram: bool) -> Vec<u8> {
    use realip_core::proxy::*;
    let (src, dst): (std::net::SocketAddr, std::net::SocketAddr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let addresses = match (src, dst) {
        (std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(d)) => {
            Addresses::Ipv4 { src: s, dst: d }
        }
        (std::net::SocketAddr::V6(s), std::net::SocketAddr::V6(d)) => {
            Addresses::Ipv6 { src: s, dst: d }
        }
        _ => panic!("mixed families"),
    };
    let h = OwnedHeader {
        version: Version::V2,
        command: Command::Proxy,
        transport: if dgram {
            Transport::Dgram
        } else {
            Transport::Stream
        },
        addresses,
        tlvs: vec![],
    };
    encode_v2(&h, true).unwrap()
}

#[tokio::test]
async fn forged_headers_from_untrusted_peer_are_ignored() {
    let w = whoami(TRUST);
    let forged = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6"),
    ];
    for strategy in [
        "rightmost-trusted-range",
        "single-header:X-Real-IP,remote-addr",
        "rightmost-trusted-range:Forwarded",
    ] {
        let w = whoami(&["--trusted", "127.0.0.1/32", "--strategy", strategy]);
        let (status, _, body) = get_from("127.0.0.2", w.http, "/api", &forged).await;
        assert_eq!(status, 200);
        let v = json(&body);
        assert_eq!(v["realIp"]["ip"], "127.0.0.2", "{strategy}: {body}");
        assert_eq!(v["realIp"]["source"], "peer", "{strategy}");
        // The same headers from the trusted peer are believed.
        let (_, _, body) = get_from("127.0.0.1", w.http, "/api", &forged).await;
        assert_eq!(json(&body)["realIp"]["ip"], "6.6.6.6", "{strategy}: {body}");
    }
    // The text view says the same.
    let (_, _, body) = get_from("127.0.0.2", w.http, "/", &forged).await;
    assert!(body.contains("\nRealIP: 127.0.0.2:"), "{body}");
    assert!(body.contains("RemoteAddr: 127.0.0.2:"), "{body}");
    assert!(body.contains("X-Forwarded-For: 6.6.6.6"), "{body}");
}

#[tokio::test]
async fn xff_chain_through_trusted_peer() {
    let w = whoami(&["--trusted", "127.0.0.1/32", "--trusted", "10.0.0.0/8"]);
    let (_, _, body) = get_from(
        "127.0.0.1",
        w.http,
        "/api",
        &[("X-Forwarded-For", "203.0.113.7, 10.1.1.1")],
    )
    .await;
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], "203.0.113.7");
    assert_eq!(v["realIp"]["header"], "X-Forwarded-For");
    let hops = v["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 3);
    assert_eq!(hops[0]["trusted"], false);
    assert_eq!(hops[1]["trusted"], true);
    assert_eq!(hops[2]["source"], "peer");
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
        assert!(v.get(k).is_some(), "/api lacks {k}");
    }
    assert_eq!(v["url"], "/api");
    assert_eq!(v["method"], "GET");
    assert!(v["remoteAddr"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn endpoints_and_formats() {
    let w = whoami(&["--name", "pod-a"]);
    let (s, _, body) = get_from("127.0.0.2", w.http, "/clientip", &[]).await;
    assert_eq!(s, 200);
    let (ip, port) = body.rsplit_once(':').expect("ip:port");
    assert_eq!(ip, "127.0.0.2");
    assert!(
        port.parse::<u16>().is_ok() && !body.ends_with('\n'),
        "{body:?}"
    );
    let (_, _, body) = get_from("127.0.0.2", w.http, "/realip", &[]).await;
    assert!(body.starts_with("127.0.0.2:"), "{body}");

    let (_, _, body) = get_from("127.0.0.1", w.http, "/?x=1", &[("X-Custom", "a")]).await;
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "Name: pod-a");
    assert!(lines[1].starts_with("Hostname: "));
    assert!(
        lines.iter().any(|l| l.starts_with("IP: 127.0.0.1")),
        "{body}"
    );
    assert!(lines.contains(&"GET /?x=1 HTTP/1.1"), "{body}");
    assert!(lines.contains(&"X-Custom: a"), "{body}");
    assert!(
        lines.iter().any(|l| l.starts_with("Hop: peer 127.0.0.1:")),
        "{body}"
    );

    let (_, _, body) = get_from("127.0.0.2", w.http, "/echoserver?a=b", &[]).await;
    assert!(body.contains("\tclient_address=127.0.0.2\n"), "{body}");
    assert!(
        body.contains("\treal path=/echoserver\n\tquery=a=b\n\trequest_version=1.1\n"),
        "{body}"
    );
    assert!(body.contains("\thost=whoami.test\n"), "{body}");

    let (_, _, body) = get_from("127.0.0.1", w.http, "/bench", &[]).await;
    assert_eq!(body, "1");
    let (_, h, body) = get_from("127.0.0.1", w.http, "/data?size=2&unit=KB", &[]).await;
    assert_eq!(body.len(), 2048);
    assert_eq!(h["content-length"], "2048");
    let (_, h, _) = get_from("127.0.0.1", w.http, "/?header=X-A:b&header=X-B:c", &[]).await;
    assert_eq!(
        (h["x-a"].to_str().unwrap(), h["x-b"].to_str().unwrap()),
        ("b", "c")
    );
    let (s, _, _) = get_from("127.0.0.1", w.http, "/?header=bad", &[]).await;
    assert_eq!(s, 400);
    let t = std::time::Instant::now();
    let (s, _, _) = get_from("127.0.0.1", w.http, "/bench?wait=300ms", &[]).await;
    assert_eq!(s, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let (s, _, _) = get_from("127.0.0.1", w.http, "/?wait=nonsense", &[]).await;
    assert_eq!(s, 400);
    // The environment is shown only when asked.
    let (_, _, body) = get_from("127.0.0.1", w.http, "/", &[]).await;
    assert!(!body.contains("PATH="));
    let (_, _, body) = get_from("127.0.0.1", w.http, "/?env=true", &[]).await;
    assert!(body.contains("PATH="));
}

#[tokio::test]
async fn health_can_be_flipped() {
    let w = whoami(&[]);
    let (s, _, _) = get_from("127.0.0.1", w.http, "/health", &[]).await;
    assert_eq!(s, 200);
    let c = connect_from("127.0.0.1", w.http).await;
    let (s, _, _) = http1_over(c, "POST", "/health", &[], "503").await;
    assert_eq!(s, 200);
    let (s, _, _) = get_from("127.0.0.1", w.http, "/health", &[]).await;
    assert_eq!(s, 503);
    let c = connect_from("127.0.0.1", w.http).await;
    let (s, _, _) = http1_over(c, "POST", "/health", &[], "abc").await;
    assert_eq!(s, 400);
    let c = connect_from("127.0.0.1", w.http).await;
    let (s, _, _) = http1_over(c, "POST", "/health", &[], &"9".repeat(100)).await;
    assert_eq!(s, 413);
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let w = whoami(TRUST);
    let c = connect_from("127.0.0.1", w.http).await;
    let (s, body) = h2_over(c, "/api", &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(s, 200);
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], "198.51.100.9");
    let c = connect_from("127.0.0.1", w.http).await;
    let (_, body) = h2_over(c, "/", &[]).await;
    assert!(body.contains("GET / HTTP/2.0"), "{body}");
    assert!(body.contains("Host: whoami.test"), "{body}");
}

#[tokio::test]
async fn proxy_protocol_on_http() {
    let w = whoami(&["--trusted", "127.0.0.1/32", "--proxy-protocol", "any"]);
    // v1 from the trusted peer.
    let mut c = connect_from("127.0.0.1", w.http).await;
    let out = raw_exchange(
        &mut c,
        b"PROXY TCP4 192.0.2.10 10.0.0.1 5555 80\r\nGET /realip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("192.0.2.10:5555"), "{out}");
    // v2 from the trusted peer, then a normal client on the same connection.
    let mut c = connect_from("127.0.0.1", w.http).await;
    let mut bytes = v2_header("[2001:db8::7]:4444", "[2001:db8::1]:80", false);
    bytes.extend_from_slice(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let out = raw_exchange(&mut c, &bytes).await;
    let out = String::from_utf8_lossy(&out);
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v = json(body);
    assert_eq!(v["realIp"]["ip"], "2001:db8::7");
    assert_eq!(v["realIp"]["port"], 4444);
    assert_eq!(v["realIp"]["source"], "proxy-protocol");
    assert_eq!(v["proxyProtocol"]["version"], 2);
    // A header from an untrusted peer: closed without a response.
    let mut c = connect_from("127.0.0.2", w.http).await;
    let out = raw_exchange(
        &mut c,
        b"PROXY TCP4 192.0.2.10 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    // No header at all on a PROXY listener: closed, never guessed.
    let mut c = connect_from("127.0.0.1", w.http).await;
    let out = raw_exchange(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.is_empty());
    // A malformed header: closed.
    let mut c = connect_from("127.0.0.1", w.http).await;
    let out = raw_exchange(
        &mut c,
        b"PROXY TCP4 192.0.2.10 10.0.0.1 05555 80\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(out.is_empty());
    // The log line is written before the close, but reaches us through a
    // pipe and a reader thread: give it a moment on a loaded machine.
    let mut logs = String::new();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(logs.contains("untrusted peer") && logs.contains("invalid PROXY header"))
        && std::time::Instant::now() < end
    {
        for l in w.drain_logs() {
            logs.push_str(&l);
            logs.push('\n');
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(logs.contains("untrusted peer"), "{logs}");
    assert!(logs.contains("invalid PROXY header"), "{logs}");
    // A v1-only listener refuses v2.
    let w1 = whoami(&["--trusted", "127.0.0.1/32", "--proxy-protocol", "v1"]);
    let mut c = connect_from("127.0.0.1", w1.http).await;
    let mut bytes = v2_header("192.0.2.1:1", "10.0.0.1:80", false);
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(raw_exchange(&mut c, &bytes).await.is_empty());
}

#[tokio::test]
async fn tcp_line_protocol_with_proxy_v2() {
    let w = whoami(&[
        "--trusted",
        "127.0.0.1/32",
        "--tcp",
        "127.0.0.1:0",
        "--tcp-proxy-protocol",
        "v2",
    ]);
    let tcp = w.tcp.expect("tcp address");
    let mut c = connect_from("127.0.0.1", tcp).await;
    c.write_all(&v2_header("198.51.100.20:6000", "10.0.0.1:9000", false))
        .await
        .unwrap();
    c.write_all(b"WHO\nCLIENTIP\nhello\n").await.unwrap();
    let mut r = BufReader::new(c);
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut l))
            .await
            .unwrap()
            .unwrap();
        lines.push(l);
    }
    assert!(lines[0].starts_with("peer=127.0.0.1:"), "{lines:?}");
    assert!(
        lines[0].contains(" client=198.51.100.20:6000 source=proxy-protocol hostname="),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("127.0.0.1:") && lines[1].ends_with('\n'),
        "{lines:?}"
    );
    assert_eq!(lines[2], "Received: hello\n");
    // From the untrusted address the connection is closed.
    let mut c = connect_from("127.0.0.2", tcp).await;
    let mut bytes = v2_header("198.51.100.20:6000", "10.0.0.1:9000", false);
    bytes.extend_from_slice(b"WHO\n");
    assert!(raw_exchange(&mut c, &bytes).await.is_empty());
}

#[tokio::test]
async fn tcp_line_too_long_is_refused() {
    let w = whoami(&["--tcp", "127.0.0.1:0"]);
    let mut c = connect_from("127.0.0.1", w.tcp.unwrap()).await;
    let out = raw_exchange(&mut c, &vec![b'a'; 10_000]).await;
    assert_eq!(
        String::from_utf8_lossy(&out),
        "error: line longer than 4096 bytes\n"
    );
}

#[tokio::test]
async fn client_field_on_tcp_and_udp() {
    let w = whoami(&[
        "--trusted",
        "127.0.0.1/32",
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--client-field",
        "v4",
    ]);
    // 114.248.238.236, the seed's example client, as a big-endian u32.
    let field = [114u8, 248, 238, 236];
    let mut c = connect_from("127.0.0.1", w.tcp.unwrap()).await;
    c.write_all(&field).await.unwrap();
    c.write_all(b"WHO\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(&mut c).read_line(&mut line).await.unwrap();
    assert!(
        line.contains(" client=114.248.238.236 source=client-field "),
        "{line}"
    );
    // The same field from an untrusted peer is not believed.
    let mut c = connect_from("127.0.0.2", w.tcp.unwrap()).await;
    c.write_all(&field).await.unwrap();
    c.write_all(b"WHO\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(&mut c).read_line(&mut line).await.unwrap();
    assert!(
        line.contains(" client=127.0.0.2:") && line.contains("source=peer"),
        "{line}"
    );

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut d = field.to_vec();
    d.extend_from_slice(b"WHO");
    sock.send_to(&d, w.udp.unwrap()).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(
        reply.contains(" client=114.248.238.236 source=client-field "),
        "{reply}"
    );
}

#[tokio::test]
async fn udp_with_proxy_v2_per_datagram() {
    let w = whoami(&[
        "--trusted",
        "127.0.0.1/32",
        "--udp",
        "127.0.0.1:0",
        "--udp-proxy-protocol",
        "v2",
    ]);
    let udp = w.udp.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (client, cmd, want) in [
        (
            "198.51.100.1:1111",
            "WHO",
            "client=198.51.100.1:1111 source=proxy-protocol",
        ),
        (
            "198.51.100.2:2222",
            "WHO",
            "client=198.51.100.2:2222 source=proxy-protocol",
        ),
        ("198.51.100.2:2222", "clientip", "127.0.0.1:"),
        ("198.51.100.2:2222", "echo hi", "hi"),
    ] {
        let mut d = v2_header(client, "10.0.0.1:53", true);
        d.extend_from_slice(cmd.as_bytes());
        sock.send_to(&d, udp).await.unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.contains(want), "{cmd}: {reply}");
    }
    // A datagram without the header is dropped: no reply.
    sock.send_to(b"WHO", udp).await.unwrap();
    let mut buf = [0u8; 1500];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
            .await
            .is_err()
    );
    // So is one from an untrusted sender.
    let other = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut d = v2_header("198.51.100.1:1111", "10.0.0.1:53", true);
    d.extend_from_slice(b"WHO");
    other.send_to(&d, udp).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), other.recv_from(&mut buf))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn limits_answer_431_and_408() {
    let w = whoami(&["--header-timeout", "1s", "--max-headers", "20"]);
    let big = "x".repeat(20_000);
    let (s, _, _) = get_from("127.0.0.1", w.http, "/", &[("X-Big", &big)]).await;
    assert_eq!(s, 431);
    let many: Vec<(String, String)> = (0..40).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (s, _, _) = get_from("127.0.0.1", w.http, "/", &many).await;
    assert_eq!(s, 431);
    // Slowloris: half a request head, then silence.
    let mut c = connect_from("127.0.0.1", w.http).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    let t = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "slow request held the connection"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // The same on a keep-alive connection after several answered requests
    // (the head timer is shared per connection and re-armed, not made anew).
    let mut c = connect_from("127.0.0.1", w.http).await;
    for _ in 0..3 {
        c.write_all(b"GET /bench HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    let t = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "second slow head closed after {waited:?}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // Garbage gets a 400, and the server lives on.
    let mut c = connect_from("127.0.0.1", w.http).await;
    let out = raw_exchange(&mut c, b"\x01\x02 nonsense\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"));
    let (s, _, _) = get_from("127.0.0.1", w.http, "/bench", &[]).await;
    assert_eq!(s, 200);
}

/// Read until `n` complete responses (by content-length) have arrived.
async fn read_responses(c: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while out.len() < n {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let got = tokio::time::timeout(left, c.read(&mut chunk))
            .await
            .expect("responses in time")
            .unwrap();
        assert!(got > 0, "closed after {} responses: {out:?}", out.len());
        buf.extend_from_slice(&chunk[..got]);
        // Split off every complete response.
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                break;
            };
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            let is_head_reply = out.len() < n && head.contains("x-head-reply");
            let total = end + 4 + if is_head_reply { 0 } else { len };
            if buf.len() < total {
                break;
            }
            out.push(String::from_utf8_lossy(&buf[..total]).into_owned());
            buf.drain(..total);
        }
    }
    out
}

#[tokio::test]
async fn http1_keep_alive_pipelining_and_bodies() {
    let w = whoami(&[]);
    // Three pipelined requests in one write, answered in order.
    let mut c = connect_from("127.0.0.1", w.http).await;
    c.write_all(
        b"GET /clientip HTTP/1.1\r\nHost: x\r\n\r\nGET /bench HTTP/1.1\r\nHost: x\r\n\r\nGET /realip HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_responses(&mut c, 3).await;
    let local = c.local_addr().unwrap().to_string();
    assert!(
        r[0].starts_with("HTTP/1.1 200 OK\r\n") && r[0].ends_with(&local),
        "{}",
        r[0]
    );
    assert!(r[1].ends_with("\r\n\r\n1"), "{}", r[1]);
    assert!(r[2].ends_with(&local), "{}", r[2]);
    assert!(r[0].contains("\r\ndate: "), "{}", r[0]);
    // A body on the same connection (POST /health), then GET again: the
    // body is read as a body, not as the next request.
    c.write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n503")
        .await
        .unwrap();
    let r = read_responses(&mut c, 1).await;
    assert!(r[0].starts_with("HTTP/1.1 200"), "{}", r[0]);
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_responses(&mut c, 1).await;
    assert!(r[0].starts_with("HTTP/1.1 503"), "{}", r[0]);
    c.write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n200\r\n0\r\n\r\n")
        .await
        .unwrap();
    let r = read_responses(&mut c, 1).await;
    assert!(r[0].starts_with("HTTP/1.1 200"), "{}", r[0]);
    // HEAD: the length of the body it would get, and no body.
    let mut c = connect_from("127.0.0.1", w.http).await;
    c.write_all(b"HEAD /bench?header=X-Head-Reply:1 HTTP/1.1\r\nHost: x\r\n\r\nGET /bench HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_responses(&mut c, 2).await;
    assert!(
        r[0].contains("content-length: 1\r\n") && r[0].ends_with("\r\n\r\n"),
        "{}",
        r[0]
    );
    assert!(r[1].ends_with("\r\n\r\n1"), "{}", r[1]);
    // HTTP/1.0 closes after one answer unless asked to keep alive;
    // Connection: close on 1.1 closes too.
    for req in [
        &b"GET /bench HTTP/1.0\r\n\r\n"[..],
        b"GET /bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let mut c = connect_from("127.0.0.1", w.http).await;
        let out = raw_exchange(&mut c, req).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.ends_with("\r\n\r\n1"), "{out}");
        assert_eq!(out.matches("HTTP/1.").count(), 1, "{out}");
    }
    let mut c = connect_from("127.0.0.1", w.http).await;
    c.write_all(b"GET /bench HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let r = read_responses(&mut c, 1).await;
    assert!(
        r[0].starts_with("HTTP/1.0 200") && r[0].contains("connection: keep-alive"),
        "{}",
        r[0]
    );
    c.write_all(b"GET /bench HTTP/1.0\r\n\r\n").await.unwrap();
    let r = read_responses(&mut c, 1).await;
    assert!(r[0].ends_with("\r\n\r\n1"), "{}", r[0]);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let w = whoami(&["--grace", "5s"]);
    let http = w.http;
    let slow =
        tokio::spawn(async move { get_from("127.0.0.1", http, "/bench?wait=1s", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = w.child.id();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (s, _, body) = slow.await.unwrap();
    assert_eq!((s, body.as_str()), (200, "1"));
    let mut w = w;
    let status = tokio::task::spawn_blocking(move || {
        let r = w.child.wait();
        (r, w)
    })
    .await
    .unwrap();
    assert!(status.0.unwrap().success());
    // No new connections once stopped.
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
}

#[tokio::test]
async fn tls_h2_and_http11_by_alpn() {
    let pki = pki();
    let d = pki.dir.to_str().unwrap().to_string();
    let w = whoami(&[
        "--cert",
        &format!("{d}/cert.pem"),
        "--key",
        &format!("{d}/key.pem"),
        "--trusted",
        "127.0.0.1/32",
    ]);
    let s = tls_connect(&pki, w.http, false, &[b"h2"]).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = h2_over(s, "/api", &[("x-forwarded-for", "198.51.100.3")]).await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], "198.51.100.3");
    assert_eq!(v["tls"]["alpn"], "h2");
    let s = tls_connect(&pki, w.http, false, &[b"http/1.1"])
        .await
        .unwrap();
    let (status, _, body) = http1_over(s, "GET", "/echoserver", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\trequest_scheme=https\n"), "{body}");
}

#[tokio::test]
async fn mtls_requires_and_shows_the_client_certificate() {
    let pki = pki();
    let d = pki.dir.to_str().unwrap().to_string();
    let w = whoami(&[
        "--cert",
        &format!("{d}/cert.pem"),
        "--key",
        &format!("{d}/key.pem"),
        "--cacert",
        &format!("{d}/ca.pem"),
    ]);
    let s = tls_connect(&pki, w.http, true, &[b"h2"]).await.unwrap();
    let (status, body) = h2_over(s, "/", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("ClientCert: CN=client-a"), "{body}");
    // Without a certificate the server refuses: the handshake or the first
    // exchange fails, and no response comes back.
    match tls_connect(&pki, w.http, false, &[b"http/1.1"]).await {
        Err(_) => {}
        Ok(mut s) => {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut out = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
                .await
                .unwrap();
            assert!(
                r.is_err() || out.is_empty(),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

/// On a dual-stack listener ([::]) an IPv4 client arrives as
/// ::ffff:127.0.0.1. whoami shows it, and trusts it, as the IPv4 address it
/// is: a v4-mapped spelling must neither hide the peer nor slip past (or
/// into) an IPv4 trusted range. UDP replies still reach the client.
#[tokio::test]
async fn an_ipv4_peer_on_a_dual_stack_socket_is_its_ipv4_address() {
    let w = whoami(&[
        "--listen",
        "[::]:0",
        "--udp",
        "[::]:0",
        "--trusted",
        "127.0.0.1/32",
    ]);
    let http = SocketAddr::new("127.0.0.1".parse().unwrap(), w.http.port());
    let (_, _, body) = get_from(
        "127.0.0.1",
        http,
        "/api",
        &[("X-Forwarded-For", "203.0.113.7")],
    )
    .await;
    let v = json(&body);
    assert!(
        v["remoteAddr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    assert_eq!(
        v["realIp"]["ip"], "203.0.113.7",
        "the trusted IPv4 peer's header is believed"
    );
    // Not trusted: the header is not believed, and the peer is shown as IPv4.
    let w = whoami(&["--listen", "[::]:0", "--trusted", "10.0.0.0/8"]);
    let http = SocketAddr::new("127.0.0.1".parse().unwrap(), w.http.port());
    let (_, _, body) = get_from(
        "127.0.0.1",
        http,
        "/api",
        &[("X-Forwarded-For", "203.0.113.7")],
    )
    .await;
    let v = json(&body);
    assert_eq!(v["realIp"]["ip"], "127.0.0.1", "{v}");
    // UDP over the v6 socket: the reply comes back to the IPv4 client.
    let w = whoami(&["--listen", "[::]:0", "--udp", "[::]:0"]);
    let udp = SocketAddr::new("127.0.0.1".parse().unwrap(), w.udp.unwrap().port());
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(b"WHO\n", udp).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf))
        .await
        .expect("a UDP reply")
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.contains("127.0.0.1"), "{reply}");
    assert!(!reply.contains("::ffff:"), "{reply}");
}
