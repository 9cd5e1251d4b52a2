//! What a refused configuration is told: the offence, typed, and where
//! it stands (a line and column from the YAML reader, or the key path
//! of a configuration built from flags).

use std::fmt;
use std::net::SocketAddr;

use super::listener::ModeName;

/// A refused configuration file: the file, where in it, and the offence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}: {offence}", self.line())]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// Where the offence stands; `None` when the whole file is at fault.
    pub at: Option<Location>,
    /// What is wrong.
    pub offence: Offence,
}

impl ConfigError {
    /// The line (1-based; 0 when the whole file is at fault).
    pub fn line(&self) -> usize {
        self.at.map_or(0, |l| l.line)
    }
}

/// A place in the file's text, both 1-based. Lines are counted by `\n`
/// alone, as editors and `grep -n` count them (the YAML reader also
/// breaks lines at a bare CR); the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
}

impl Location {
    /// The place of byte `index` of `text`.
    pub fn at(text: &str, index: usize) -> Location {
        let mut end = index.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: 1 + before.matches('\n').count(),
            column: 1 + before[line_start..].chars().count(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A configuration the checks of [`Config::checked`](super::Config::checked)
/// refuse: the offence and the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{offence}")]
pub struct Refused {
    /// What is wrong.
    pub offence: Offence,
    /// The key at fault (`listeners[2].accept_proxy`).
    pub key: KeyPath,
}

/// A path of keys and sequence positions from the top of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Step>);

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A mapping's key.
    Key(String),
    /// A sequence's element (0-based).
    Index(usize),
}

impl KeyPath {
    /// The top-level `key`.
    pub fn top(key: &str) -> KeyPath {
        KeyPath(vec![Step::Key(key.to_string())])
    }

    /// Listener `index` (`listeners[index]`).
    pub fn listener(index: usize) -> KeyPath {
        KeyPath::top("listeners").index(index)
    }

    /// Pool `name` (`pools.name`).
    pub fn pool(name: &str) -> KeyPath {
        KeyPath::top("pools").key(name)
    }

    /// This path, then `key`.
    pub fn key(mut self, key: &str) -> KeyPath {
        self.0.push(Step::Key(key.to_string()));
        self
    }

    /// This path, then element `index`.
    pub fn index(mut self, index: usize) -> KeyPath {
        self.0.push(Step::Index(index));
        self
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Offence {
    /// The YAML reader refused the text: its syntax, a value of the wrong
    /// shape, or one its type refused (a bad address, duration, name).
    /// The reader reports these as text only, so its words are kept.
    #[error("{message}")]
    Yaml {
        /// The reader's message, without its own "at line N column M".
        message: String,
    },
    /// A key given twice in one mapping (YAML keys are unique; the second
    /// value would silently replace the first).
    #[error("duplicate key `{key}`: a key may appear once in a mapping")]
    RepeatedKey {
        /// The key.
        key: String,
    },
    /// A listener's field that no mode has.
    #[error("unknown field `{field}` of {} {mode} listener, expected one of {}", mode.article(), mode.expected())]
    UnknownField {
        /// The field given.
        field: String,
        /// The listener's mode.
        mode: ModeName,
    },
    /// A listener's field that belongs to other modes.
    #[error("{field} is for {} listeners, not {mode}", ModeName::taking(field))]
    NotForMode {
        /// The field given.
        field: &'static str,
        /// The listener's mode.
        mode: ModeName,
    },
    /// A listener without `mode:`.
    #[error("a listener needs a mode: http, tcp or udp")]
    NoMode,
    /// A listener without `listen:`.
    #[error("{} {mode} listener needs listen: the address to listen on", mode.article())]
    NoListen {
        /// The listener's mode.
        mode: ModeName,
    },
    /// A tcp or udp listener without `pool:`.
    #[error("{} {mode} listener needs a pool", mode.article())]
    NoPoolGiven {
        /// The listener's mode.
        mode: ModeName,
    },
    /// An http listener without routes.
    #[error("an http listener needs routes")]
    NoRoutes,
    /// No listener at all.
    #[error("no listener")]
    NoListener,
    /// A pool without backends.
    #[error("pool {pool:?} has no backend")]
    NoBackend {
        /// The pool.
        pool: String,
    },
    /// Health checks that could never bring a backend in or out.
    #[error("rise and fall must be at least 1")]
    HealthCount,
    /// Health checks with no time between or for them.
    #[error("interval and timeout must be above 0")]
    HealthTime,
    /// Two listeners on one address and transport.
    #[error("{addr} is listened on twice")]
    ListenedTwice {
        /// The address.
        addr: SocketAddr,
    },
    /// A trusted list that does not parse.
    #[error(transparent)]
    Trusted(#[from] realip_core::TrustError),
    /// A reference to a pool that is not defined.
    #[error("no pool is named {pool:?}")]
    NoPool {
        /// The name given.
        pool: String,
    },
    /// A route that cannot be used.
    #[error(transparent)]
    Route(#[from] crate::route::RouteError),
    /// PROXY v2 TLVs on a listener that sends no PROXY v2 header.
    #[error("proxy_v2 TLVs need client_ip: proxy-v2")]
    TlvsWithoutProxyV2,
    /// A PROXY header accepted from anyone.
    #[error("accept_proxy needs trusted: the LBs allowed to send a PROXY header")]
    AcceptProxyUntrusted,
}
