//! The values a configuration file holds, each parsed and checked by its
//! type: addresses, durations, backends, and the named choices (schedules,
//! checks, client-IP modes, forwarding headers, Upgrade protocols).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::forward::{Header, Underscores, XffMode};
use crate::health::Check;
use crate::tcp::ClientIp;
use crate::{Backend, Method};

/// A socket address (`127.0.0.1:80`, `[::1]:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
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

impl TryFrom<String> for Addr {
    type Error = BadAddr;
    fn try_from(s: String) -> Result<Self, BadAddr> {
        parse_addr(&s).map(Addr)
    }
}

/// A duration: `500ms`, `2s`, `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Dur(pub Duration);

impl TryFrom<String> for Dur {
    type Error = BadDuration;
    fn try_from(s: String) -> Result<Self, BadDuration> {
        parse_duration(&s).map(Dur)
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
    ($name:ident, $inner:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(pub $inner);

        impl TryFrom<String> for $name {
            type Error = <$inner as std::str::FromStr>::Err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse::<$inner>().map($name)
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
from_str_field!(XffField, XffMode, "`append` or `client`.");
from_str_field!(UnderscoresField, Underscores, "`drop` or `pass`.");
from_str_field!(
    UpgradeField,
    UpgradeToken,
    "A protocol an HTTP/1.1 Upgrade may switch to."
);

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
    ProxyModeField,
    realip_net::ProxyMode,
    "`off`, `v1`, `v2` or `any`."
);
from_str_field!(
    StrategyField,
    realip_core::Strategy,
    "A realip-core strategy."
);

/// A backend: `ADDR:PORT`, `ADDR:PORT=WEIGHT`, or `{address, weight}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BackendForm")]
pub struct BackendSpec(pub Backend);

#[derive(Deserialize)]
#[serde(untagged)]
enum BackendForm {
    Text(String),
    Full {
        address: String,
        weight: Option<u32>,
    },
}

impl TryFrom<BackendForm> for BackendSpec {
    type Error = BadBackend;
    fn try_from(f: BackendForm) -> Result<Self, BadBackend> {
        match f {
            BackendForm::Text(s) => parse_backend(&s).map(BackendSpec),
            BackendForm::Full { address, weight } => Ok(BackendSpec(Backend {
                addr: parse_addr(&address)?,
                weight: weight.unwrap_or(1),
            })),
        }
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
