//! The probes' requests, sent from inside a namespace: HTTP to whoami's
//! JSON, and the client-IP field over TCP and UDP. Each answer becomes a `Seen`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use crate::scenario::{Probe, Send};

use super::error::RunError;
use super::netns::inside;
use super::result::Seen;

/// How long a probe waits to connect (a dropped SYN is a timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a probe waits for its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// Send the probe's requests from inside `netns`: a thread joins the
/// namespace (sockets it makes live there) and does the requests.
pub(super) fn in_netns(netns: &str, probe: &Probe) -> Result<Vec<Seen>, RunError> {
    let probe = probe.clone();
    inside(netns, move || {
        let to: SocketAddr = probe.to.parse().map_err(|_| RunError::BadTarget {
            to: probe.to.clone(),
        })?;
        Ok((0..probe.count).map(|_| request(&probe, to)).collect())
    })?
}

fn failed(e: &std::io::Error) -> Seen {
    let timeout = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    Seen {
        timeout,
        error: (!timeout).then(|| e.to_string()),
        ..Seen::default()
    }
}

fn request(probe: &Probe, to: SocketAddr) -> Seen {
    match probe.send {
        Send::Http | Send::Health => http(probe, to),
        Send::TcpField => tcp_field(to),
        Send::UdpField => udp_field(to),
    }
}

fn http(probe: &Probe, to: SocketAddr) -> Seen {
    let mut s = match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(READ_TIMEOUT));
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n",
        probe.path
    );
    for (k, v) in &probe.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return failed(&e);
    }
    let mut buf = Vec::new();
    if let Err(e) = s.take(MAX_ANSWER).read_to_end(&mut buf) {
        if buf.is_empty() {
            return failed(&e);
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Seen {
            error: Some(if text.is_empty() {
                "closed without an answer".into()
            } else {
                "no HTTP head".into()
            }),
            ..Seen::default()
        };
    };
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    let mut seen = Seen {
        status,
        ..Seen::default()
    };
    if probe.send == Send::Health {
        seen.body = Some(body.to_string());
        return seen;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        seen.error = Some(format!(
            "not whoami's JSON: {}",
            body.chars().take(120).collect::<String>()
        ));
        return seen;
    };
    let ip = |x: &serde_json::Value| -> Option<IpAddr> {
        let s = x.as_str()?;
        s.parse::<SocketAddr>()
            .map(|a| a.ip())
            .ok()
            .or_else(|| s.parse().ok())
    };
    seen.peer = ip(&v["remoteAddr"]);
    seen.client = ip(&v["realIp"]["ip"]);
    seen.source = v["realIp"]["source"].as_str().map(str::to_string);
    seen.proxy_source = v["proxyProtocol"]["source"].as_str().map(str::to_string);
    seen.pod = v["name"].as_str().map(str::to_string);
    if let Some(h) = v["headers"].as_object() {
        for (k, vals) in h {
            let joined: Vec<&str> = vals
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect();
            seen.headers.insert(k.clone(), joined.join(", "));
        }
    }
    seen
}

/// The message: this side's own IP as the field, as an application that
/// knows its address would write it (seed 000, method 2), then `WHO`.
fn field_message(local: SocketAddr) -> Vec<u8> {
    let mut msg = match local.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    msg.extend_from_slice(b"WHO\n");
    msg
}

/// whoami's `WHO` answer: `peer=A:P client=C source=S hostname=H`.
fn parse_who(line: &str) -> Seen {
    let mut seen = Seen::default();
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("peer", v)) => seen.peer = v.parse::<SocketAddr>().map(|a| a.ip()).ok(),
            Some(("client", v)) => {
                seen.client = v
                    .parse::<SocketAddr>()
                    .map(|a| a.ip())
                    .ok()
                    .or_else(|| v.parse().ok())
            }
            Some(("source", v)) => seen.source = Some(v.to_string()),
            _ => {}
        }
    }
    if seen.peer.is_none() {
        seen.error = Some(format!("not a WHO answer: {line:?}"));
    }
    seen
}

fn tcp_field(to: SocketAddr) -> Seen {
    let mut s = match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(local) = s.local_addr() else {
        return Seen::default();
    };
    if let Err(e) = s.write_all(&field_message(local)) {
        return failed(&e);
    }
    let mut line = String::new();
    match BufReader::new(s.take(4096)).read_line(&mut line) {
        Ok(_) if !line.is_empty() => parse_who(line.trim_end()),
        Ok(_) => Seen {
            error: Some("closed without an answer".into()),
            ..Seen::default()
        },
        Err(e) => failed(&e),
    }
}

fn udp_field(to: SocketAddr) -> Seen {
    let s = match UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(to).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(local) = s.local_addr() else {
        return Seen::default();
    };
    if let Err(e) = s.send(&field_message(local)) {
        return failed(&e);
    }
    let mut buf = [0u8; 2048];
    match s.recv(&mut buf) {
        Ok(n) => parse_who(String::from_utf8_lossy(&buf[..n]).trim_end()),
        Err(e) => failed(&e),
    }
}
