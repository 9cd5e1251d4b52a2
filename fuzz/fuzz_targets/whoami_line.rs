//! whoami's line protocol. TCP: each line read gets exactly one reply
//! line (no CR or LF in it that the line did not hold, so a client cannot
//! make one request look like two answers); `echo` returns its argument and an
//! unknown line comes back after `Received: `. UDP: a datagram's PROXY v2
//! header and client-IP field are split off inside the datagram, in every
//! mode, and what is left gets a reply.
#![no_main]
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use realip_core::field::{self, FieldFormat};
use realip_core::{ClientAddr, Source};
use realip_net::{split_datagram, ProxyMode};
use realip_whoami::fuzz::line_reply;

fn check_line(line: &str, peer: SocketAddr, client: Option<&ClientAddr>) {
    let reply = line_reply(line, peer, client, "pod-1");
    for end in ['\r', '\n'] {
        assert!(
            line.contains(end) || !reply.contains(end),
            "{line:?} -> {reply:?}"
        );
    }
    if let Some(arg) = line.strip_prefix("echo ") {
        assert_eq!(reply, arg);
    }
    let cmd = line.split_once(' ').map_or(line, |(c, _)| c);
    let known = ["WHO", "CLIENTIP"]
        .iter()
        .any(|k| cmd.eq_ignore_ascii_case(k))
        || cmd == "hostname"
        || cmd == "echo";
    if !known {
        assert_eq!(reply, format!("Received: {line}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let peer: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let client = ClientAddr {
        ip: "192.0.2.7".parse().unwrap(),
        port: Some(7),
        source: Source::ProxyProtocol,
    };
    // TCP: lines as read_until(b'\n') returns them, then as served.
    for raw in data.split_inclusive(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_end_matches(['\r', '\n']);
        assert!(!line.contains('\n'));
        check_line(line, peer, Some(&client));
        check_line(line, peer, None);
    }
    // UDP: the whole input is one datagram.
    for mode in [ProxyMode::Off, ProxyMode::V1, ProxyMode::V2, ProxyMode::Any] {
        let payload = if mode.is_on() {
            match split_datagram(data, mode, 1024) {
                Ok((_, rest)) => {
                    assert!(rest.len() < data.len());
                    assert!(data.ends_with(rest));
                    rest
                }
                Err(_) => continue,
            }
        } else {
            data
        };
        for fmt in [None, Some(FieldFormat::V4), Some(FieldFormat::V6)] {
            let rest = match fmt {
                None => payload,
                Some(f) => match field::decode(f, payload) {
                    Ok((_, rest)) => {
                        assert_eq!(rest.len() + f.len(), payload.len());
                        rest
                    }
                    Err(_) => continue,
                },
            };
            let text = String::from_utf8_lossy(rest);
            let _ = line_reply(text.trim_end_matches(['\r', '\n']), peer, None, "pod-1");
        }
    }
});
