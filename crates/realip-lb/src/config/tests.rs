use std::time::Duration;

use super::*;
use crate::forward::Header;
use crate::http::HttpLimits;
use crate::Method;

const GOOD: &str = "\
pools:
  web:
    schedule: maglev
    backends: [127.0.0.2:8080, \"127.0.0.3:8080=2\", {address: 127.0.0.4:8080, weight: 3}]
    health: {check: \"http:/healthz\", interval: 500ms, fall: 2}
listeners:
  - name: ingress
    mode: http
    listen: 127.0.0.1:8080
    trusted: [loopback, 10.0.0.0/8]
    headers: [x-forwarded-for, x-real-ip, forwarded]
    routes:
      - {host: shop.example, path: /api, pool: web}
  - mode: tcp
    listen: 127.0.0.1:9000
    pool: web
    client_ip: proxy-v2
    proxy_v2: {unique_id: true, crc32c: true}
  - mode: udp
    listen: 127.0.0.1:9000
    pool: web
metrics: 127.0.0.1:9100
grace: 2s
";

fn http(l: &ListenerSpec) -> &HttpListener {
    match &l.mode {
        Mode::Http(h) => h,
        other => panic!("not http: {other:?}"),
    }
}

fn tcp(l: &ListenerSpec) -> &TcpListener {
    match &l.mode {
        Mode::Tcp(t) => t,
        other => panic!("not tcp: {other:?}"),
    }
}

fn udp(l: &ListenerSpec) -> &UdpListener {
    match &l.mode {
        Mode::Udp(u) => u,
        other => panic!("not udp: {other:?}"),
    }
}

/// Where the `nth` (0-based) `needle` of `text` starts.
fn spot(text: &str, needle: &str, nth: usize) -> Location {
    let (i, _) = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {needle:?} #{nth}"));
    Location::at(text, i)
}

#[test]
fn a_good_file_parses() {
    let c = Config::parse("lb.yaml", GOOD).unwrap();
    let web = &c.pools["web"];
    assert_eq!(web.schedule.0, Method::Maglev);
    assert_eq!(web.backends[1].0.weight, 2);
    assert_eq!(web.backends[2].0.weight, 3);
    let h = web.health.as_ref().unwrap();
    assert_eq!(
        (h.interval.0, h.fall, h.rise),
        (Duration::from_millis(500), 2, 2)
    );
    assert!(http(&c.listeners[0]).header_set().has(Header::Forwarded));
    assert!(!http(&c.listeners[0]).header_set().has(Header::XRequestId));
    assert_eq!(c.listeners[1].display_name(), "tcp-127.0.0.1:9000");
    assert_eq!(c.grace.0, Duration::from_secs(2));
}

#[test]
fn defaults_follow_the_mode() {
    let c = Config::parse("lb.yaml", GOOD).unwrap();
    // HttpLimits has no PartialEq; its Debug shows every field.
    assert_eq!(
        format!("{:?}", http(&c.listeners[0]).limits()),
        format!("{:?}", HttpLimits::default())
    );
    assert_eq!(
        http(&c.listeners[0]).upgrade_tokens(),
        vec!["websocket".to_string()]
    );
    let t = tcp(&c.listeners[1]);
    assert_eq!(
        (t.connect_timeout.0, t.idle_timeout.0, t.max_connections),
        (Duration::from_secs(3), Duration::from_secs(300), 10_000)
    );
    assert_eq!(t.client_ip.0, crate::tcp::ClientIp::ProxyV2);
    let u = udp(&c.listeners[2]);
    assert_eq!(
        (u.idle_timeout.0, u.max_connections, u.client_ip),
        (Duration::from_secs(30), 65_536, UdpClientIp::None)
    );
}

fn refused(text: &str) -> ConfigError {
    Config::parse("lb.yaml", text).unwrap_err()
}

#[test]
fn a_bad_value_names_its_line() {
    let e = refused(&GOOD.replace(
        "listen: 127.0.0.1:9000\n    pool: web\n    client_ip",
        "listen: 127.0.0.1:99999\n    pool: web\n    client_ip",
    ));
    assert_eq!(e.line(), 15, "{e}");
    assert!(e.to_string().starts_with("lb.yaml:15: "), "{e}");
    assert!(e.offence.to_string().contains("127.0.0.1:99999"), "{e}");
    let e = refused(&GOOD.replace("interval: 500ms", "interval: soon"));
    assert_eq!(e.line(), 5, "{e}");
    assert!(e.offence.to_string().contains("not a duration"), "{e}");
    let e = refused(&GOOD.replace("schedule: maglev", "schedule: random"));
    assert_eq!(e.line(), 3, "{e}");
    let e = refused(&GOOD.replace("grace: 2s", "grace: 2s\nbogus: 1"));
    assert!(e.offence.to_string().contains("bogus"), "{e}");
    assert_eq!(e.line(), 24, "{e}");
}

#[test]
fn a_bad_value_names_its_column() {
    // The value itself, not the mapping that holds it.
    let text = GOOD.replace("interval: 500ms", "interval: soon");
    assert_eq!(refused(&text).at, Some(spot(&text, "soon", 0)));
    let text = GOOD.replace("\"127.0.0.3:8080=2\"", "\"127.0.0.3:8080=two\"");
    let e = refused(&text);
    assert_eq!(e.at, Some(spot(&text, "\"127.0.0.3", 0)), "{e}");
    assert!(
        e.offence.to_string().contains("\"two\" is not a weight"),
        "{e}"
    );
}

#[test]
fn a_bare_cr_is_no_line_break_in_error_lines() {
    // Found by the lb_config fuzz target: libyaml reported line 4 of a
    // one-line file. Now it is the end of the file, as without the CRs.
    let e = refused("\r\r\r\n");
    assert_eq!(e.line(), refused("\n").line(), "{e}");
    assert!(e.line() <= 2, "{e}");
}

#[test]
fn a_bad_reference_names_its_line() {
    let e = refused(&GOOD.replace("path: /api, pool: web", "path: /api, pool: api"));
    assert_eq!(
        (e.line(), e.offence.to_string().as_str()),
        (13, "no pool is named \"api\""),
        "{e}"
    );
    let e = refused(&GOOD.replace(
        "mode: udp\n    listen: 127.0.0.1:9000",
        "mode: tcp\n    listen: 127.0.0.1:9000",
    ));
    assert!(e.offence.to_string().contains("twice"), "{e}");
    // The second listener on the address (line 15 has the first: the text
    // search this replaced found that one).
    assert_eq!(e.line(), 20, "{e}");
    let e = refused(&GOOD.replace("    client_ip: proxy-v2\n", ""));
    assert!(e.offence.to_string().contains("proxy_v2 TLVs need"), "{e}");
    assert_eq!(e.line(), 17, "{e}");
    let e = refused(&GOOD.replace("    pool: web\n    client_ip", "    client_ip"));
    assert!(e.offence.to_string().contains("needs a pool"), "{e}");
    let e = refused("listeners: []\n");
    assert_eq!(e.offence.to_string(), "no listener");
    let e = refused("listeners: [\n");
    assert!(e.line() >= 1, "{e}");
}

#[test]
fn each_mode_refuses_another_modes_field_by_name() {
    let cases = [
        // (what replaces GOOD's `headers:` line of the http listener, ...)
        (
            "    headers: [x-forwarded-for, x-real-ip, forwarded]\n",
            "    pool: web\n",
            "pool",
            "pool is for tcp and udp listeners, not http",
        ),
        (
            "    proxy_v2: {unique_id: true, crc32c: true}\n",
            "    proxy_v2: {unique_id: true, crc32c: true}\n    routes: []\n",
            "routes",
            "routes is for http listeners, not tcp",
        ),
        (
            "    listen: 127.0.0.1:9000\n    pool: web\nmetrics",
            "    listen: 127.0.0.1:9000\n    pool: web\n    accept_proxy: v2\nmetrics",
            "accept_proxy",
            "accept_proxy is for http and tcp listeners, not udp",
        ),
        (
            "    listen: 127.0.0.1:9000\n    pool: web\nmetrics",
            "    listen: 127.0.0.1:9000\n    pool: web\n    proxy_v2: {}\nmetrics",
            "proxy_v2",
            "proxy_v2 is for tcp listeners, not udp",
        ),
    ];
    for (from, to, field, message) in cases {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD);
        let e = refused(&text);
        assert_eq!(e.offence.to_string(), message, "{e}");
        assert!(
            matches!(&e.offence, Offence::NotForMode { field: f, .. } if *f == field),
            "{e:?}"
        );
        // At the key itself.
        let key = text.find(to).unwrap() + to.find(&format!("{field}:")).unwrap();
        assert_eq!(e.at, Some(Location::at(&text, key)), "{e}");
    }
    // `mode:` after the field: still refused at the field.
    let text = "pools: {web: {backends: [127.0.0.2:80]}}\nlisteners:\n  - {pool: web, listen: 127.0.0.1:80, mode: http, routes: [{pool: web}]}\n";
    let e = refused(text);
    assert_eq!(
        e.offence,
        Offence::NotForMode {
            field: "pool",
            mode: ModeName::Http
        }
    );
    assert_eq!(e.at, Some(Location { line: 3, column: 6 }), "{e}");
    // No mode's field: the listener's own fields are listed.
    let e = refused(&GOOD.replace(
        "    client_ip: proxy-v2\n",
        "    client_ip: proxy-v2\n    bogus: 1\n",
    ));
    let m = e.offence.to_string();
    assert!(m.starts_with("unknown field `bogus` of a tcp listener, expected one of `name`, `mode`, `listen`, `trusted`, `pool`"), "{m}");
    assert!(!m.contains("`routes`"), "{m}");
}

#[test]
fn a_listener_without_its_mode_or_address_or_pool_says_so() {
    let e = refused(&GOOD.replace(
        "  - mode: tcp\n    listen: 127.0.0.1:9000",
        "  - listen: 127.0.0.1:9000",
    ));
    assert_eq!((e.offence.clone(), e.line()), (Offence::NoMode, 14), "{e}");
    let e = refused(&GOOD.replace(
        "  - mode: udp\n    listen: 127.0.0.1:9000\n",
        "  - mode: udp\n",
    ));
    assert_eq!(
        e.offence.to_string(),
        "a udp listener needs listen: the address to listen on"
    );
    assert_eq!(e.line(), 19, "{e}");
    let e = refused(&GOOD.replace("    pool: web\n    client_ip", "    client_ip"));
    assert_eq!(e.offence.to_string(), "a tcp listener needs a pool");
    assert_eq!(e.line(), 14, "{e}");
    let e = refused(&GOOD.replace("mode: udp", "mode: sctp"));
    assert_eq!(
        e.at,
        Some(spot(&GOOD.replace("mode: udp", "mode: sctp"), "sctp", 0)),
        "{e}"
    );
    assert!(e.offence.to_string().contains("sctp"), "{e}");
}

#[test]
fn udp_takes_no_tcp_only_client_ip() {
    for mode in ["proxy-v1", "transparent"] {
        let text = GOOD.replace(
            "    pool: web\nmetrics",
            &format!("    pool: web\n    client_ip: {mode}\nmetrics"),
        );
        let e = refused(&text);
        assert!(
            e.offence
                .to_string()
                .contains("udp carries the client as none or proxy-v2"),
            "{e}"
        );
        assert_eq!(e.at, Some(spot(&text, mode, 0)), "{e}");
    }
}

#[test]
fn a_semantic_offence_deep_in_the_file_names_its_line_and_column() {
    // accept_proxy appears four times; only the last listener lacks trusted.
    let mut text = String::from("pools:\n  p: {backends: [127.0.0.2:80]}\nlisteners:\n");
    for port in 1..=3 {
        text.push_str(&format!(
            "  - {{mode: tcp, listen: 127.0.0.1:{port}, pool: p, trusted: [loopback], accept_proxy: v2}}\n"
        ));
    }
    text.push_str("  - mode: http\n    listen: 127.0.0.1:4\n    routes: [{pool: p}]\n    accept_proxy:   any\n");
    let e = refused(&text);
    assert_eq!(e.offence, Offence::AcceptProxyUntrusted);
    assert_eq!(e.at, Some(spot(&text, "accept_proxy", 3)), "{e}");
    assert_eq!(
        e.at,
        Some(Location {
            line: 10,
            column: 5
        })
    );
    assert!(
        e.to_string()
            .starts_with("lb.yaml:10: accept_proxy needs trusted"),
        "{e}"
    );
    // A default the file does not spell out: the nearest key it does.
    let text = text.replace("routes: [{pool: p}]", "routes: [{pool: p, path: api}]");
    let e = refused(&text);
    assert!(matches!(e.offence, Offence::Route(_)), "{e:?}");
    assert_eq!(e.at, Some(spot(&text, "path: api", 0)), "{e}");
}

#[test]
fn a_repeated_key_points_at_its_second_occurrence() {
    let text = GOOD.replace(
        "    pool: web\n    client_ip",
        "    pool: web\n    pool: web\n    client_ip",
    );
    let e = refused(&text);
    assert_eq!(e.offence, Offence::RepeatedKey { key: "pool".into() });
    assert_eq!(e.line(), 17, "{e}");
    assert_eq!(e.at, Some(spot(&text, "pool: web", 2)), "{e}");
    // In a flow mapping, and a pool defined twice (which serde's map would
    // have taken, the second replacing the first).
    let text = GOOD.replace("path: /api, pool: web", "path: /api, path: /, pool: web");
    let e = refused(&text);
    assert_eq!(e.at, Some(spot(&text, "path: /,", 0)), "{e}");
    let text = GOOD.replace(
        "listeners:\n",
        "  web: {backends: [127.0.0.9:80]}\nlisteners:\n",
    );
    let e = refused(&text);
    assert_eq!(e.offence, Offence::RepeatedKey { key: "web".into() });
    assert_eq!(e.at, Some(Location { line: 6, column: 3 }), "{e}");
}

#[test]
fn a_flag_built_configuration_is_refused_with_its_key() {
    let mut c = Config::parse("lb.yaml", GOOD).unwrap();
    if let Mode::Tcp(t) = &mut c.listeners[1].mode {
        t.pool = "nowhere".into();
    }
    let r = c.checked().unwrap_err();
    assert_eq!(r.key.to_string(), "listeners[1].pool");
    assert_eq!(r.to_string(), "no pool is named \"nowhere\"");
}

#[test]
fn mode_fields_match_the_mode_structs() {
    // serde's own refusal lists each struct's fields: the table the
    // reader sorts keys by must list the same.
    fn listed<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let e = serde_yaml_ng::from_str::<T>("zzz: 1")
            .unwrap_err()
            .to_string();
        let list = &e[e.find("expected one of").expect(&e)..];
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }
    let want = |m: ModeName| -> Vec<String> { m.fields().iter().map(|f| f.to_string()).collect() };
    assert_eq!(listed::<HttpListener>(), want(ModeName::Http));
    assert_eq!(listed::<TcpListener>(), want(ModeName::Tcp));
    assert_eq!(listed::<UdpListener>(), want(ModeName::Udp));
}

/// The ```yaml blocks of `text` that configure listeners.
fn yaml_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let line = line
            .strip_prefix("//! ")
            .or(line.strip_prefix("//!"))
            .unwrap_or(line);
        match &mut block {
            None if line.trim() == "```yaml" => block = Some(String::new()),
            Some(b) if line.trim() == "```" => {
                if b.contains("listeners:") {
                    out.push(std::mem::take(b));
                }
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_example_config_in_the_repo_loads() {
    let readme = yaml_blocks(include_str!("../../../../README.md"));
    assert_eq!(readme.len(), 1);
    let own = yaml_blocks(include_str!("mod.rs"));
    assert_eq!(own.len(), 1);
    for text in readme.iter().chain(&own) {
        let c = Config::parse("example.yaml", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let modes: Vec<_> = c.listeners.iter().map(|l| l.mode.name()).collect();
        assert_eq!(modes, [ModeName::Http, ModeName::Tcp]);
        let t = tcp(&c.listeners[1]);
        assert_eq!(t.client_ip.0, crate::tcp::ClientIp::ProxyV2);
        assert!(t.proxy_v2.as_ref().is_some_and(|p| p.unique_id && p.crc32c));
    }
    // The lab scenario's router configuration, a YAML string in YAML.
    let scenario: serde_yaml_ng::Value = serde_yaml_ng::from_str(include_str!(
        "../../../realip-lab/scenarios/11-local-shares.yaml"
    ))
    .unwrap();
    let text = scenario["router"]["config"].as_str().unwrap();
    let c = Config::parse("11-local-shares.yaml", text).unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert!(c
        .listeners
        .iter()
        .all(|l| tcp(l).client_ip.0 == crate::tcp::ClientIp::Transparent));
}
