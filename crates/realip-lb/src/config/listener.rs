//! A listener: the part every mode has (name, address, trust) and the
//! mode's own settings, one type per mode, so a field of another mode has
//! nowhere to go and each mode's defaults live with it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{
    Addr, ClientIpField, Dur, HeaderField, ProxyModeField, StrategyField, UdpClientIp,
    UnderscoresField, UpgradeField, XffField,
};
use crate::forward::HeaderSet;
use crate::http::HttpLimits;

/// A listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    /// A name for logs and metrics (default: MODE-ADDR).
    pub name: Option<String>,
    /// Where to listen.
    pub listen: Addr,
    /// Who may speak for the client (CIDRs, presets).
    pub trusted: Vec<String>,
    /// What it balances, with the mode's own settings.
    pub mode: Mode,
}

impl ListenerSpec {
    /// The name used in logs and metrics.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.mode.name(), self.listen.0))
    }

    /// The listener's trust set.
    pub fn trust(&self) -> Result<realip_core::TrustSet, realip_core::TrustError> {
        realip_core::TrustSet::parse(self.trusted.iter().map(String::as_str))
    }
}

/// What a listener balances (`mode:` in the file), with that mode's
/// settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The L7 proxy.
    Http(HttpListener),
    /// L4 TCP.
    Tcp(TcpListener),
    /// L4 UDP.
    Udp(UdpListener),
}

impl Mode {
    /// The mode's name.
    pub fn name(&self) -> ModeName {
        match self {
            Mode::Http(_) => ModeName::Http,
            Mode::Tcp(_) => ModeName::Tcp,
            Mode::Udp(_) => ModeName::Udp,
        }
    }
}

/// A mode's name, as written after `mode:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// `http`.
    Http,
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
}

/// The fields every listener has, read before the mode's own.
pub(super) const COMMON_FIELDS: &[&str] = &["name", "mode", "listen", "trusted"];

impl ModeName {
    /// Every mode, in the order messages name them.
    pub const ALL: [ModeName; 3] = [ModeName::Http, ModeName::Tcp, ModeName::Udp];

    /// The fields of this mode's settings (each is a field of the mode's
    /// struct below; a test holds the two together).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            ModeName::Http => &[
                "accept_proxy",
                "routes",
                "headers",
                "xff",
                "underscores",
                "upgrades",
                "strategy",
                "tls",
                "connect_timeout",
                "idle_timeout",
                "header_timeout",
                "response_timeout",
                "max_header_bytes",
                "max_connections",
                "retries",
            ],
            ModeName::Tcp => &[
                "pool",
                "client_ip",
                "accept_proxy",
                "proxy_v2",
                "connect_timeout",
                "idle_timeout",
                "max_connections",
            ],
            ModeName::Udp => &[
                "pool",
                "client_ip",
                "connect_timeout",
                "idle_timeout",
                "max_connections",
            ],
        }
    }

    /// The mode's field named `key`, if it has one.
    pub(super) fn field(self, key: &str) -> Option<&'static str> {
        self.fields().iter().copied().find(|f| *f == key)
    }

    /// The modes that have field `key`, as a message names them ("tcp and
    /// udp"); empty when none has.
    pub fn taking(key: &str) -> String {
        let takers: Vec<&str> = ModeName::ALL
            .iter()
            .filter(|m| m.field(key).is_some())
            .map(|m| m.as_str())
            .collect();
        match takers.split_last() {
            None => String::new(),
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    }

    /// The fields a listener of this mode may have, as a message lists
    /// them.
    pub(super) fn expected(self) -> String {
        let all: Vec<String> = COMMON_FIELDS
            .iter()
            .chain(self.fields())
            .map(|f| format!("`{f}`"))
            .collect();
        all.join(", ")
    }

    /// Whether its listeners balance over one pool (and need `pool:`).
    pub fn has_pool(self) -> bool {
        match self {
            ModeName::Http => false,
            ModeName::Tcp | ModeName::Udp => true,
        }
    }

    /// "a" or "an", for "a tcp listener", "an http listener".
    pub(super) fn article(self) -> &'static str {
        match self {
            ModeName::Http => "an",
            ModeName::Tcp | ModeName::Udp => "a",
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeName::Http => "http",
            ModeName::Tcp => "tcp",
            ModeName::Udp => "udp",
        }
    }

    /// The transport its socket uses: http and tcp share TCP ports.
    pub fn transport(self) -> &'static str {
        match self {
            ModeName::Udp => "udp",
            ModeName::Http | ModeName::Tcp => "tcp",
        }
    }
}

impl std::fmt::Display for ModeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An http listener's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpListener {
    /// Expect a PROXY header from a trusted LB in front.
    pub accept_proxy: ProxyModeField,
    /// The routes (at least one).
    pub routes: Vec<RouteSpec>,
    /// Headers added (default: nginx-ingress's set).
    pub headers: Option<Vec<HeaderField>>,
    /// What X-Forwarded-For carries.
    pub xff: XffField,
    /// Request headers with `_` in their name: drop (as nginx) or pass.
    pub underscores: UnderscoresField,
    /// The protocols an HTTP/1.1 Upgrade may switch to (default:
    /// websocket); other Upgrade requests go on as plain requests.
    pub upgrades: Option<Vec<UpgradeField>>,
    /// How the client is read from a trusted peer's headers (a chain;
    /// default rightmost-trusted-range over X-Forwarded-For).
    pub strategy: Vec<StrategyField>,
    /// TLS termination.
    pub tls: Option<TlsSpec>,
    /// Accepted as for tcp, but not used: backend connections are made by
    /// the shared upstream pool, with its own connect timeout.
    pub connect_timeout: Option<Dur>,
    /// Accepted, but not used: the upstream pool closes idle backend
    /// connections on its own timeout.
    pub idle_timeout: Option<Dur>,
    /// Longest wait for a request head (and TLS handshake).
    pub header_timeout: Dur,
    /// Longest wait for a backend's response head.
    pub response_timeout: Dur,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Other backends tried after one fails.
    pub retries: u32,
}

impl Default for HttpListener {
    fn default() -> Self {
        let d = HttpLimits::default();
        HttpListener {
            accept_proxy: ProxyModeField::default(),
            routes: Vec::new(),
            headers: None,
            xff: XffField::default(),
            underscores: UnderscoresField::default(),
            upgrades: None,
            strategy: Vec::new(),
            tls: None,
            connect_timeout: None,
            idle_timeout: None,
            header_timeout: Dur(d.header_timeout),
            response_timeout: Dur(d.response_timeout),
            max_header_bytes: d.max_header_bytes,
            max_connections: d.max_connections,
            retries: d.retries,
        }
    }
}

impl HttpListener {
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

    /// The limits the proxy applies.
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_header_bytes: self.max_header_bytes,
            header_timeout: self.header_timeout.0,
            response_timeout: self.response_timeout.0,
            max_connections: self.max_connections,
            retries: self.retries,
        }
    }
}

/// A tcp listener's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListener {
    /// The pool.
    pub pool: String,
    /// none, proxy-v1, proxy-v2, transparent.
    #[serde(default)]
    pub client_ip: ClientIpField,
    /// Expect a PROXY header from a trusted LB in front.
    #[serde(default)]
    pub accept_proxy: ProxyModeField,
    /// PROXY v2 TLVs (with `client_ip: proxy-v2`).
    #[serde(default)]
    pub proxy_v2: Option<ProxyV2Spec>,
    /// Longest wait for a backend to accept.
    #[serde(default = "TcpListener::default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Close a connection with no traffic either way for this long.
    #[serde(default = "TcpListener::default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Connections at once.
    #[serde(default = "TcpListener::default_max_connections")]
    pub max_connections: usize,
}

impl TcpListener {
    fn default_connect_timeout() -> Dur {
        Dur(Duration::from_secs(3))
    }
    fn default_idle_timeout() -> Dur {
        Dur(Duration::from_secs(300))
    }
    fn default_max_connections() -> usize {
        10_000
    }
}

/// A udp listener's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpListener {
    /// The pool.
    pub pool: String,
    /// none or proxy-v2.
    #[serde(default)]
    pub client_ip: UdpClientIp,
    /// Accepted as for tcp, but not used: UDP has no connection to wait for.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Forget a flow idle this long.
    #[serde(default = "UdpListener::default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Flows at once.
    #[serde(default = "UdpListener::default_max_flows")]
    pub max_connections: usize,
}

impl UdpListener {
    fn default_idle_timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    fn default_max_flows() -> usize {
        65_536
    }
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
