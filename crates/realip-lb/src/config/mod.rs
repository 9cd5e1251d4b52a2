//! The configuration file (`realip lb --config FILE`): listeners and
//! backend pools in YAML, checked whole before anything runs (pure: no
//! I/O but reading the named file's text, done by the caller).
//!
//! ```yaml
//! pools:
//!   web:
//!     schedule: round-robin          # weighted-round-robin, least-connections, source-hash, maglev
//!     backends: [127.0.0.2:8080, "127.0.0.3:8080=2"]
//!     health: {check: "http:/healthz", interval: 2s, timeout: 1s, rise: 2, fall: 3}
//! listeners:
//!   - name: ingress
//!     mode: http                     # http, tcp or udp
//!     listen: 127.0.0.1:8080
//!     trusted: [loopback]
//!     underscores: drop              # or pass: other header names with `_`
//!     upgrades: [websocket]          # the Upgrade protocols spliced (h2c refused)
//!     routes:
//!       - {host: shop.example, path: /api, pool: web}
//!       - {path: /, pool: web}
//!   - name: l4
//!     mode: tcp
//!     listen: 127.0.0.1:9000
//!     pool: web
//!     client_ip: proxy-v2
//!     proxy_v2: {unique_id: true, crc32c: true}
//! metrics: 127.0.0.1:9100
//! grace: 10s
//! ```
//!
//! A value that does not parse is refused with its line and column (the
//! YAML reader's position); a reference to an undefined pool, a second
//! listener on one address and options that do not fit the mode are
//! refused with the line of the offending key, found in the text.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod values;

pub use values::*;

use crate::forward::HeaderSet;
use crate::tcp::ClientIp;
use crate::Method;

/// A refused configuration: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The line (1-based; 0 when the whole file is at fault).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A configuration the checks of [`Config::checked`] refuse: the key at
/// fault, the value pointed at, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// The key at fault (`listen`, `pool`, ...).
    pub key: &'static str,
    /// Its value, when that finds the line better than the key.
    pub value: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Backend pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSpec>,
    /// Listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Serve Prometheus metrics here.
    #[serde(default)]
    pub metrics: Option<Addr>,
    /// On SIGTERM, how long open connections may finish.
    #[serde(default = "default_grace")]
    pub grace: Dur,
}

fn default_grace() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A pool of backends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// How backends are picked.
    #[serde(default = "default_method")]
    pub schedule: MethodField,
    /// The backends.
    pub backends: Vec<BackendSpec>,
    /// Health checks; without them every backend is up.
    #[serde(default)]
    pub health: Option<HealthSpec>,
}

fn default_method() -> MethodField {
    MethodField(Method::RoundRobin)
}

/// Health checks of a pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `tcp` or `http:/PATH`.
    pub check: CheckField,
    /// Check this port of each backend's address (a healthCheckNodePort).
    #[serde(default)]
    pub port: Option<u16>,
    /// Time between rounds.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Longest a check may take.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Passes in a row that bring a backend back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Failures in a row that take it out.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// What a listener balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The L7 proxy.
    Http,
    /// L4 TCP.
    Tcp,
    /// L4 UDP.
    Udp,
}

/// A route of an HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The host (`shop.example`, `*.example`); any host when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// The path prefix (whole segments).
    #[serde(default = "default_path")]
    pub path: String,
    /// The pool it leads to.
    pub pool: String,
}

fn default_path() -> String {
    "/".to_string()
}

/// TLS termination files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// PROXY v2 TLVs sent to L4 backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyV2Spec {
    /// A UNIQUE_ID TLV per connection: 32 hex digits (128 bits, as
    /// X-Request-Id).
    #[serde(default)]
    pub unique_id: bool,
    /// A CRC32C TLV over the header.
    #[serde(default)]
    pub crc32c: bool,
    /// An AUTHORITY TLV (the host name the client asked for, as known here).
    #[serde(default)]
    pub authority: Option<String>,
}

/// A listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// A name for logs and metrics (default: MODE-ADDR).
    #[serde(default)]
    pub name: Option<String>,
    /// http, tcp or udp.
    pub mode: Mode,
    /// Where to listen.
    pub listen: Addr,
    /// Who may speak for the client (CIDRs, presets).
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Expect a PROXY header from a trusted LB in front (tcp, http).
    #[serde(default)]
    pub accept_proxy: Option<ProxyModeField>,
    /// tcp and udp: the pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// tcp and udp: none, proxy-v1, proxy-v2, transparent.
    #[serde(default)]
    pub client_ip: Option<ClientIpField>,
    /// tcp: PROXY v2 TLVs.
    #[serde(default)]
    pub proxy_v2: Option<ProxyV2Spec>,
    /// http: routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// http: headers added (default: nginx-ingress's set).
    #[serde(default)]
    pub headers: Option<Vec<HeaderField>>,
    /// http: what X-Forwarded-For carries.
    #[serde(default)]
    pub xff: Option<XffField>,
    /// http: request headers with `_` in their name: drop (default, as
    /// nginx) or pass.
    #[serde(default)]
    pub underscores: Option<UnderscoresField>,
    /// http: the protocols an HTTP/1.1 Upgrade may switch to (default:
    /// websocket); other Upgrade requests go on as plain requests.
    #[serde(default)]
    pub upgrades: Option<Vec<UpgradeField>>,
    /// http: how the client is read from a trusted peer's headers (a
    /// chain; default rightmost-trusted-range over X-Forwarded-For).
    #[serde(default)]
    pub strategy: Vec<StrategyField>,
    /// http: TLS termination.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Longest wait for a backend to accept.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// tcp, udp: close a connection or forget a flow idle this long;
    /// http: close an idle keep-alive connection to a backend.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// http: longest wait for a request head (and TLS handshake).
    #[serde(default)]
    pub header_timeout: Option<Dur>,
    /// http: longest wait for a backend's response head.
    #[serde(default)]
    pub response_timeout: Option<Dur>,
    /// http: largest request head in bytes.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// tcp, http: connections at once; udp: flows at once.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// http: other backends tried after one fails.
    #[serde(default)]
    pub retries: Option<u32>,
}

impl ListenerSpec {
    /// The name used in logs and metrics.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.mode_name(), self.listen.0))
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
            Mode::Udp => "udp",
        }
    }

    /// The forwarding headers this listener adds.
    pub fn header_set(&self) -> HeaderSet {
        match &self.headers {
            None => HeaderSet::ingress(),
            Some(list) => list.iter().map(|h| h.0).collect(),
        }
    }

    /// The Upgrade protocols this listener passes through.
    pub fn upgrade_tokens(&self) -> Vec<String> {
        match &self.upgrades {
            None => vec!["websocket".to_string()],
            Some(list) => list.iter().map(|u| u.0 .0.clone()).collect(),
        }
    }

    /// The listener's trust set.
    pub fn trust(&self) -> Result<realip_core::TrustSet, realip_core::TrustError> {
        realip_core::TrustSet::parse(self.trusted.iter().map(String::as_str))
    }

    /// The strategy chain for reading a trusted peer's headers.
    pub fn strategies(&self) -> Vec<realip_core::Strategy> {
        if self.strategy.is_empty() {
            vec![realip_core::Strategy::RightmostTrustedRange(
                "X-Forwarded-For".into(),
            )]
        } else {
            self.strategy.iter().map(|s| s.0.clone()).collect()
        }
    }
}

impl Config {
    /// Parse and check `text`, read from `file` (named in errors).
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let err = |line: usize, reason: String| ConfigError {
            file: file.to_string(),
            line,
            reason,
        };
        let config: Config = serde_yaml_ng::from_str(text).map_err(|e| {
            // libyaml also counts a bare CR as a line break; editors,
            // `grep -n` and the lookups below (`str::lines`) do not, so the
            // line is counted from the byte offset instead.
            let line = e.location().map_or(0, |l| {
                let before = text.as_bytes().get(..l.index()).unwrap_or(text.as_bytes());
                1 + before.iter().filter(|&&b| b == b'\n').count()
            });
            // The reader's message ends with its own "at line N column M".
            let reason = e.to_string();
            let reason = match reason.find(" at line ") {
                Some(i) => reason[..i].to_string(),
                None => reason,
            };
            // A value refused by its type is reported at the start of the
            // mapping holding it; the quoted value finds its own line.
            let line = quoted(&reason)
                .and_then(|v| {
                    text.lines()
                        .enumerate()
                        .skip(line.saturating_sub(1))
                        .find(|(_, l)| l.contains(v))
                        .map(|(i, _)| i + 1)
                })
                .unwrap_or(line);
            err(line, reason)
        })?;
        config
            .check()
            .map_err(|(key, value, reason)| err(find_line(text, key, value.as_deref()), reason))?;
        Ok(config)
    }

    /// The checks of [`Config::parse`] on a configuration built otherwise
    /// (from command-line flags).
    pub fn checked(&self) -> Result<(), Refused> {
        self.check()
            .map_err(|(key, value, reason)| Refused { key, value, reason })
    }

    /// The checks types cannot make: returns the key and value to point
    /// at, and the reason.
    fn check(&self) -> Result<(), (&'static str, Option<String>, String)> {
        if self.listeners.is_empty() {
            return Err(("listeners", None, "no listener".to_string()));
        }
        for (name, p) in &self.pools {
            if p.backends.is_empty() {
                return Err(("backends", None, format!("pool {name:?} has no backend")));
            }
            if let Some(h) = &p.health {
                if h.rise == 0 || h.fall == 0 {
                    return Err((
                        "health",
                        None,
                        "rise and fall must be at least 1".to_string(),
                    ));
                }
                if h.interval.0.is_zero() || h.timeout.0.is_zero() {
                    return Err((
                        "health",
                        None,
                        "interval and timeout must be above 0".to_string(),
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in &self.listeners {
            let listen = Some(l.listen.0.to_string());
            let transport = if l.mode == Mode::Udp { "udp" } else { "tcp" };
            if !seen.insert((transport, l.listen.0)) {
                return Err((
                    "listen",
                    listen,
                    format!("{} is listened on twice", l.listen.0),
                ));
            }
            if let Err(e) = l.trust() {
                return Err(("trusted", None, e.to_string()));
            }
            let pool_ref = |name: &str| -> Result<(), (&'static str, Option<String>, String)> {
                if self.pools.contains_key(name) {
                    Ok(())
                } else {
                    Err((
                        "pool",
                        Some(name.to_string()),
                        format!("no pool is named {name:?}"),
                    ))
                }
            };
            let only = |what: &'static str, set: bool, modes: &str| {
                if set {
                    Err((
                        what,
                        None,
                        format!("{what} is for {modes} listeners, not {}", l.mode_name()),
                    ))
                } else {
                    Ok(())
                }
            };
            match l.mode {
                Mode::Http => {
                    if l.routes.is_empty() {
                        return Err((
                            "listen",
                            listen,
                            "an http listener needs routes".to_string(),
                        ));
                    }
                    for r in &l.routes {
                        pool_ref(&r.pool)?;
                        crate::route::Route::new(r.host.as_deref(), &r.path, ())
                            .map_err(|e| ("path", Some(r.path.clone()), e.to_string()))?;
                    }
                    only("pool", l.pool.is_some(), "tcp and udp")?;
                    only("client_ip", l.client_ip.is_some(), "tcp and udp")?;
                    only("proxy_v2", l.proxy_v2.is_some(), "tcp")?;
                }
                Mode::Tcp | Mode::Udp => {
                    match &l.pool {
                        Some(p) => pool_ref(p)?,
                        None => {
                            return Err((
                                "listen",
                                listen,
                                "a tcp or udp listener needs a pool".to_string(),
                            ))
                        }
                    }
                    only("routes", !l.routes.is_empty(), "http")?;
                    only("headers", l.headers.is_some(), "http")?;
                    only("xff", l.xff.is_some(), "http")?;
                    only("underscores", l.underscores.is_some(), "http")?;
                    only("upgrades", l.upgrades.is_some(), "http")?;
                    only("strategy", !l.strategy.is_empty(), "http")?;
                    only("tls", l.tls.is_some(), "http")?;
                    only("retries", l.retries.is_some(), "http")?;
                    only("response_timeout", l.response_timeout.is_some(), "http")?;
                    only("header_timeout", l.header_timeout.is_some(), "http")?;
                    only("max_header_bytes", l.max_header_bytes.is_some(), "http")?;
                    let ip = l.client_ip.as_ref().map_or(ClientIp::None, |c| c.0);
                    if l.mode == Mode::Udp {
                        only("accept_proxy", l.accept_proxy.is_some(), "tcp and http")?;
                        only("proxy_v2", l.proxy_v2.is_some(), "tcp")?;
                        if matches!(ip, ClientIp::ProxyV1 | ClientIp::Transparent) {
                            return Err((
                                "client_ip",
                                None,
                                "udp carries the client as none or proxy-v2 (PROXY v1 has no datagram form)".to_string(),
                            ));
                        }
                    }
                    if l.proxy_v2.is_some() && ip != ClientIp::ProxyV2 {
                        return Err((
                            "proxy_v2",
                            None,
                            "proxy_v2 TLVs need client_ip: proxy-v2".to_string(),
                        ));
                    }
                }
            }
            if l.accept_proxy.as_ref().is_some_and(|m| m.0.is_on()) && l.trusted.is_empty() {
                return Err((
                    "accept_proxy",
                    None,
                    "accept_proxy needs trusted: the LBs allowed to send a PROXY header"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// The first `"quoted"` text of an error message.
fn quoted(reason: &str) -> Option<&str> {
    let start = reason.find('"')? + 1;
    let len = reason[start..].find('"')?;
    (len > 0).then(|| &reason[start..start + len])
}

/// The line of the first `key:` whose value is `value` (any value when
/// `None`); 0 when not found.
fn find_line(text: &str, key: &str, value: Option<&str>) -> usize {
    for (i, line) in text.lines().enumerate() {
        let t = line
            .trim_start()
            .trim_start_matches("- ")
            .trim_start_matches('{');
        for part in t.split([',', '{']) {
            let part = part.trim();
            if let Some(rest) = part
                .strip_prefix(key)
                .and_then(|r| r.trim_start().strip_prefix(':'))
            {
                let v = rest
                    .trim()
                    .trim_end_matches('}')
                    .trim()
                    .trim_matches(['"', '\'']);
                if value.is_none_or(|want| v == want) {
                    return i + 1;
                }
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Header;

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
        assert!(c.listeners[0].header_set().has(Header::Forwarded));
        assert!(!c.listeners[0].header_set().has(Header::XRequestId));
        assert_eq!(c.listeners[1].display_name(), "tcp-127.0.0.1:9000");
        assert_eq!(c.grace.0, Duration::from_secs(2));
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
        assert_eq!(e.line, 15, "{e}");
        assert!(e.to_string().starts_with("lb.yaml:15: "), "{e}");
        assert!(e.reason.contains("127.0.0.1:99999"), "{e}");
        let e = refused(&GOOD.replace("interval: 500ms", "interval: soon"));
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("not a duration"), "{e}");
        let e = refused(&GOOD.replace("schedule: maglev", "schedule: random"));
        assert_eq!(e.line, 3, "{e}");
        let e = refused(&GOOD.replace("grace: 2s", "grace: 2s\nbogus: 1"));
        assert!(e.reason.contains("bogus"), "{e}");
        assert_eq!(e.line, 24, "{e}");
    }

    #[test]
    fn a_bare_cr_is_no_line_break_in_error_lines() {
        // Found by the lb_config fuzz target: libyaml reported line 4 of a
        // one-line file. Now it is the end of the file, as without the CRs.
        let e = refused("\r\r\r\n");
        assert_eq!(e.line, refused("\n").line, "{e}");
        assert!(e.line <= 2, "{e}");
    }

    #[test]
    fn a_bad_reference_names_its_line() {
        let e = refused(&GOOD.replace("path: /api, pool: web", "path: /api, pool: api"));
        assert_eq!(
            (e.line, e.reason.as_str()),
            (13, "no pool is named \"api\""),
            "{e}"
        );
        let e = refused(&GOOD.replace(
            "mode: udp\n    listen: 127.0.0.1:9000",
            "mode: tcp\n    listen: 127.0.0.1:9000",
        ));
        assert!(e.reason.contains("twice"), "{e}");
        assert_eq!(e.line, 15, "{e}");
        let e = refused(&GOOD.replace("    client_ip: proxy-v2\n", ""));
        assert!(e.reason.contains("proxy_v2 TLVs need"), "{e}");
        assert_eq!(e.line, 17, "{e}");
        let e = refused(&GOOD.replace("    pool: web\n    client_ip", "    client_ip"));
        assert!(e.reason.contains("needs a pool"), "{e}");
        let e = refused("listeners: []\n");
        assert_eq!(e.reason, "no listener");
        let e = refused("listeners: [\n");
        assert!(e.line >= 1, "{e}");
    }
}
