//! The line protocol on TCP and UDP: `WHO`, `CLIENTIP`, and agnhost
//! netexec's `hostname`, `echo <msg>`, `clientip`; anything else is echoed
//! as `Received: <line>`.
//!
//! Each TCP connection and each UDP datagram may start with a PROXY header
//! (as configured, from trusted peers only) and then a client-IP field.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use realip_core::{field, ClientAddr, NoHeaders, ProxyClaim};
use realip_net::{claim_of, split_datagram, IdleTimeout, Rewind};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::conn::{accept_loop, accept_proxy, stopped};
use crate::state::State;

/// The reply to one line. Pure, so the protocol is tested without sockets.
pub(crate) fn respond(
    line: &str,
    peer: SocketAddr,
    client: Option<&ClientAddr>,
    hostname: &str,
) -> String {
    let (cmd, arg) = match line.split_once(' ') {
        Some((c, a)) => (c, Some(a)),
        None => (line, None),
    };
    if cmd.eq_ignore_ascii_case("WHO") && arg.is_none() {
        let (c, s) = match client {
            Some(c) => (c.to_string(), c.source.to_string()),
            None => ("-".into(), "-".into()),
        };
        return format!("peer={peer} client={c} source={s} hostname={hostname}");
    }
    if cmd.eq_ignore_ascii_case("CLIENTIP") && arg.is_none() {
        return peer.to_string();
    }
    if cmd == "hostname" && arg.is_none() {
        return hostname.to_string();
    }
    if cmd == "echo" {
        return arg.unwrap_or("").to_string();
    }
    format!("Received: {line}")
}

fn resolve(
    state: &State,
    peer: SocketAddr,
    claim: Option<ProxyClaim>,
    field: Option<IpAddr>,
) -> Option<ClientAddr> {
    let mut req = realip_core::Request::new(peer, &NoHeaders);
    req.proxy = claim;
    req.field = field;
    state.config.resolver.resolve(&req)
}

pub(crate) async fn serve_tcp(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, state, shutdown, tcp_conn).await
}

async fn tcp_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &state.config;
    let Some(accepted) = accept_proxy(&mut stream, peer, cfg.tcp_proxy, &state).await else {
        return;
    };
    let claim = accepted.header.as_ref().map(claim_of);
    let io = IdleTimeout::new(Rewind::new(accepted.rest, stream), cfg.limits.idle_timeout);
    let mut io = BufReader::new(io);
    let mut field_ip = None;
    if let Some(fmt) = cfg.client_field {
        let mut buf = [0u8; 16];
        let need = &mut buf[..fmt.len()];
        match tokio::time::timeout(cfg.limits.header_timeout, io.read_exact(need)).await {
            Ok(Ok(_)) => match field::decode(fmt, need) {
                Ok((ip, _)) => field_ip = Some(ip),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "bad client-IP field; closing");
                    return;
                }
            },
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "closed before the client-IP field");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "no client-IP field in time; closing");
                return;
            }
        }
    }
    let client = resolve(&state, peer, claim, field_ip);
    let (client_s, source_s) = match &client {
        Some(c) => (c.to_string(), c.source.to_string()),
        None => ("-".into(), "-".into()),
    };
    let max = cfg.limits.max_line;
    let mut lines = 0u64;
    let mut buf = Vec::with_capacity(256);
    let end = loop {
        buf.clear();
        let mut limited = (&mut io).take(max as u64 + 1);
        let read = tokio::select! {
            r = limited.read_until(b'\n', &mut buf) => r,
            _ = stopped(&mut shutdown) => break "shutdown",
        };
        match read {
            Ok(0) => break "closed",
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break "error";
            }
        }
        if buf.last() != Some(&b'\n') && buf.len() > max {
            let _ = io
                .get_mut()
                .write_all(format!("error: line longer than {max} bytes\n").as_bytes())
                .await;
            break "line too long";
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\r', '\n']);
        let mut reply = respond(line, peer, client.as_ref(), &state.hostname);
        reply.push('\n');
        lines += 1;
        if io.get_mut().write_all(reply.as_bytes()).await.is_err() {
            break "error";
        }
    };
    tracing::info!(%peer, client = %client_s, source = %source_s, lines, end, "tcp connection");
}

pub(crate) async fn serve_udp(
    socket: UdpSocket,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &state.config;
    // The largest UDP payload; a datagram cannot be bigger.
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        // Replies go to `reply_to` as received; everything else sees the
        // peer as the address it is (see `conn::canonical`).
        let reply_to = from;
        let from = crate::conn::canonical(from);
        let datagram = &buf[..n];
        let (claim, payload) = if cfg.udp_proxy.is_on() {
            if !cfg.resolver.trusted().contains(from.ip()) {
                let c = state.stats.proxy_untrusted.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(peer = %from, count = c, "PROXY datagram from an untrusted peer dropped");
                continue;
            }
            match split_datagram(datagram, cfg.udp_proxy, cfg.limits.proxy.max_v2_len) {
                Ok((h, rest)) => (Some(claim_of(&h)), rest),
                Err(e) => {
                    let c = state.stats.proxy_invalid.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(peer = %from, error = %e, count = c, "datagram dropped");
                    continue;
                }
            }
        } else {
            (None, datagram)
        };
        let (field_ip, payload) = match cfg.client_field {
            None => (None, payload),
            Some(fmt) => match field::decode(fmt, payload) {
                Ok((ip, rest)) => (Some(ip), rest),
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "datagram without a valid client-IP field dropped");
                    continue;
                }
            },
        };
        let client = resolve(&state, from, claim, field_ip);
        let text = String::from_utf8_lossy(payload);
        let line = text.trim_end_matches(['\r', '\n']);
        let reply = respond(line, from, client.as_ref(), &state.hostname);
        let (c, s) = match &client {
            Some(c) => (c.to_string(), c.source.to_string()),
            None => ("-".into(), "-".into()),
        };
        tracing::info!(peer = %from, client = %c, source = %s, "udp datagram");
        if let Err(e) = socket.send_to(reply.as_bytes(), reply_to).await {
            tracing::debug!(peer = %from, error = %e, "udp reply failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_core::Source;

    #[test]
    fn commands() {
        let peer: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let c = ClientAddr {
            ip: "192.0.2.1".parse().unwrap(),
            port: Some(7),
            source: Source::ProxyProtocol,
        };
        assert_eq!(
            respond("WHO", peer, Some(&c), "h"),
            "peer=127.0.0.2:5000 client=192.0.2.1:7 source=proxy-protocol hostname=h"
        );
        assert_eq!(
            respond("who", peer, None, "h"),
            "peer=127.0.0.2:5000 client=- source=- hostname=h"
        );
        assert_eq!(respond("CLIENTIP", peer, Some(&c), "h"), "127.0.0.2:5000");
        assert_eq!(respond("clientip", peer, None, "h"), "127.0.0.2:5000");
        assert_eq!(respond("hostname", peer, None, "h"), "h");
        assert_eq!(respond("echo hi there", peer, None, "h"), "hi there");
        assert_eq!(respond("hello", peer, None, "h"), "Received: hello");
        assert_eq!(respond("", peer, None, "h"), "Received: ");
    }
}
