//! The values a configuration file holds, each parsed and checked by its
//! type: addresses, durations, backends, and the named choices (schedules,
//! checks, client-IP modes, forwarding headers, Upgrade protocols).
//!
//! Each is read from the YAML text by `from_text`, which refuses a value
//! while the reader is still on it: the reader then stamps the refusal
//! with the value's own line and column rather than its mapping's.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::forward::{Header, Underscores, XffMode};
use crate::health::Check;
use crate::tcp::{ClientIp, UnknownClientIp};
use crate::{Backend, Method};

/// Reads a `T` from a YAML string (any scalar: `80` is the text "80").
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    struct Text<T>(PhantomData<T>);
    impl<T> Visitor<'_> for Text<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            s.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(Text(PhantomData))
}

/// A socket address (`127.0.0.1:80`, `[::1]:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub SocketAddr);

/// Text that is not a socket address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not ADDR:PORT")]
pub struct BadAddr {
    /// The text given.
    pub value: String,
}

fn parse_addr(s: &str) -> Result<SocketAddr, BadAddr> {
    s.parse().map_err(|_| BadAddr { value: s.into() })
}

impl FromStr for Addr {
    type Err = BadAddr;
    fn from_str(s: &str) -> Result<Self, BadAddr> {
        parse_addr(s).map(Addr)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A duration: `500ms`, `2s`, `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = BadDuration;
    fn from_str(s: &str) -> Result<Self, BadDuration> {
        parse_duration(s).map(Dur)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// Text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a duration like 10s or 500ms")]
pub struct BadDuration {
    /// The text given.
    pub value: String,
}

/// A duration as Go writes them (`500ms`, `2s`, `1m30s`), as every
/// other realip option takes.
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    realip_net::parse_duration(s).ok_or_else(|| BadDuration { value: s.into() })
}

macro_rules! from_str_field {
    ($(#[$meta:meta])* $name:ident, $inner:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq)]
        $(#[$meta])*
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                from_text(d).map($name)
            }
        }
    };
}

from_str_field!(MethodField, Method, "A schedule name.");
from_str_field!(CheckField, Check, "A health check: `tcp` or `http:/PATH`.");
from_str_field!(
    ClientIpField,
    ClientIp,
    "How an L4 backend learns the client."
);
from_str_field!(HeaderField, Header, "A forwarding header's name.");
from_str_field!(
    #[derive(Default)]
    XffField,
    XffMode,
    "`append` or `client`."
);
from_str_field!(
    #[derive(Default)]
    UnderscoresField,
    Underscores,
    "`drop` (the default, as nginx) or `pass`."
);
from_str_field!(
    UpgradeField,
    UpgradeToken,
    "A protocol an HTTP/1.1 Upgrade may switch to."
);

impl Default for ClientIpField {
    fn default() -> Self {
        ClientIpField(ClientIp::None)
    }
}

/// How a UDP backend learns the client: `none` or `proxy-v2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UdpClientIp {
    /// It does not.
    #[default]
    None,
    /// A PROXY v2 header before each datagram.
    ProxyV2,
}

/// Text that is no client-IP mode of a udp listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUdpClientIp {
    /// No client-IP mode at all.
    #[error(transparent)]
    Unknown(#[from] UnknownClientIp),
    /// A mode of tcp listeners only.
    #[error("udp carries the client as none or proxy-v2 (PROXY v1 has no datagram form)")]
    TcpOnly {
        /// The mode given.
        value: String,
    },
}

impl FromStr for UdpClientIp {
    type Err = BadUdpClientIp;
    fn from_str(s: &str) -> Result<Self, BadUdpClientIp> {
        match s.parse::<ClientIp>()? {
            ClientIp::None => Ok(UdpClientIp::None),
            ClientIp::ProxyV2 => Ok(UdpClientIp::ProxyV2),
            ClientIp::ProxyV1 | ClientIp::Transparent => {
                Err(BadUdpClientIp::TcpOnly { value: s.into() })
            }
        }
    }
}

impl<'de> Deserialize<'de> for UdpClientIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A protocol an HTTP/1.1 `Upgrade` may switch to (RFC 9110 §7.8:
/// `protocol-name["/"protocol-version]`), lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeToken(pub String);

/// Text that is not an Upgrade protocol this proxy passes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUpgrade {
    /// Not `token[/version]`.
    #[error("{value:?} is not an Upgrade protocol (a token, optionally /version)")]
    NotToken {
        /// The text given.
        value: String,
    },
    /// h2c or h2: a tunnel past the proxy's rewriting.
    #[error("{value:?} cannot be passed through: the tunnel it opens would carry requests past the proxy's rewriting")]
    Tunnel {
        /// The text given.
        value: String,
    },
}

impl std::str::FromStr for UpgradeToken {
    type Err = BadUpgrade;

    fn from_str(s: &str) -> Result<Self, BadUpgrade> {
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let ok = !s.is_empty()
            && s.split('/').count() <= 2
            && s.split('/').all(|p| !p.is_empty() && p.chars().all(tchar));
        if !ok {
            return Err(BadUpgrade::NotToken { value: s.into() });
        }
        let lower = s.to_ascii_lowercase();
        // h2c through a reverse proxy opens a tunnel in which every later
        // request reaches the backend as the client wrote it: forwarding
        // headers unrewritten, routes unchecked (h2c smuggling).
        if lower == "h2c" || lower == "h2" {
            return Err(BadUpgrade::Tunnel { value: s.into() });
        }
        Ok(UpgradeToken(lower))
    }
}
from_str_field!(
    #[derive(Default)]
    ProxyModeField,
    realip_net::ProxyMode,
    "`off` (the default), `v1`, `v2` or `any`."
);
from_str_field!(
    StrategyField,
    realip_core::Strategy,
    "A realip-core strategy."
);

/// A backend: `ADDR:PORT`, `ADDR:PORT=WEIGHT`, or `{address, weight}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec(pub Backend);

/// The `{address, weight}` form. Unknown keys are ignored, as they were
/// before this form was read by hand.
#[derive(Deserialize)]
struct BackendMap {
    address: Addr,
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for BackendSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = BackendSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a backend: ADDR:PORT, ADDR:PORT=WEIGHT or {address, weight}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<BackendSpec, E> {
                parse_backend(s).map(BackendSpec).map_err(E::custom)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<BackendSpec, A::Error> {
                let m = BackendMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(BackendSpec(Backend {
                    addr: m.address.0,
                    weight: m.weight.unwrap_or(1),
                }))
            }
        }
        d.deserialize_any(Either)
    }
}

/// Text that is not a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadBackend {
    /// The address part.
    #[error(transparent)]
    Addr(#[from] BadAddr),
    /// The part after `=`.
    #[error("{value:?} is not a weight (a whole number)")]
    Weight {
        /// The text given.
        value: String,
    },
}

/// `ADDR:PORT` or `ADDR:PORT=WEIGHT`.
pub fn parse_backend(s: &str) -> Result<Backend, BadBackend> {
    let (addr, weight) = match s.split_once('=') {
        Some((a, w)) => (
            a,
            w.parse::<u32>()
                .map_err(|_| BadBackend::Weight { value: w.into() })?,
        ),
        None => (s, 1),
    };
    let addr = parse_addr(addr)?;
    Ok(Backend { addr, weight })
}
