//! An HTTP listener's limits and timeouts, and the one idle time both
//! paths and the backend connections share.

use std::time::Duration;

/// Limits of an HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request head (431 past it).
    pub max_header_bytes: usize,
    /// Longest wait for a request head, and for a TLS handshake.
    pub header_timeout: Duration,
    /// Longest wait for a backend's response head (504 past it).
    pub response_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Other backends tried after one fails.
    pub retries: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            retries: 2,
        }
    }
}

/// A client connection with no bytes either way for this long is closed,
/// between requests (nginx's `keepalive_timeout`) as in the middle of one;
/// so is a backend connection.
pub(crate) const IDLE: Duration = Duration::from_secs(75);

/// Most headers in a request or response head the fast path reads.
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest response head from a backend.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The fast path's body copy buffer.
pub(crate) const BODY_BUF: usize = 64 * 1024;
