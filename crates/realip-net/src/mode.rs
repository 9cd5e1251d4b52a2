//! The listener's PROXY setting, parsed from configuration: it says whether a
//! header must come first, never whether one might.

use std::fmt;
use std::str::FromStr;

/// Which PROXY protocol versions a listener expects. Configuration decides;
/// the listener never sniffs for an optional header (the spec forbids it:
/// a client could then forge one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No PROXY header is expected; bytes are the application's.
    #[default]
    Off,
    /// A v1 (text) header must come first.
    V1,
    /// A v2 (binary) header must come first.
    V2,
    /// Either version must come first.
    Any,
}

impl ProxyMode {
    /// Whether a header is expected at all.
    pub fn is_on(self) -> bool {
        self != ProxyMode::Off
    }
}

/// A word that is not a [`ProxyMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a PROXY mode (off, v1, v2, any)")]
pub struct UnknownProxyMode {
    /// The word given.
    pub value: String,
}

impl FromStr for ProxyMode {
    type Err = UnknownProxyMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(ProxyMode::Off),
            "v1" => Ok(ProxyMode::V1),
            "v2" => Ok(ProxyMode::V2),
            "any" => Ok(ProxyMode::Any),
            _ => Err(UnknownProxyMode { value: s.into() }),
        }
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyMode::Off => "off",
            ProxyMode::V1 => "v1",
            ProxyMode::V2 => "v2",
            ProxyMode::Any => "any",
        })
    }
}
