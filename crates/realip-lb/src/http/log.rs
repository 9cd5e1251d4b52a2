//! One log event per request, the same on both paths: peer, client and
//! where it was read, backend, status, tries, duration.

use realip_core::BackendAddr;

use super::site::Conn;

/// What one request's log event says.
pub(crate) struct Done {
    pub(crate) status: u16,
    /// The last backend tried, if any was.
    pub(crate) backend: Option<BackendAddr>,
    /// Attempts made (fresh retries on the same backend included).
    pub(crate) tries: u32,
}

/// When the request started, read only if its event will be written (the
/// clock is not free on every request of a proxy that logs at warn).
pub(crate) fn start() -> Option<std::time::Instant> {
    tracing::enabled!(tracing::Level::INFO).then(std::time::Instant::now)
}

/// The request's event at info level: peer (the TCP peer, an LB in front
/// when it sent a PROXY header), client and where it was read, backend,
/// status, tries, duration.
pub(crate) fn log_request(
    conn: &Conn,
    client: std::net::IpAddr,
    source: &realip_core::Source,
    done: &Done,
    started: Option<std::time::Instant>,
) {
    // Forwarding starts from the connection's client as its peer; when a
    // PROXY header named that client, "peer" would point at the LB that
    // `peer` below names.
    let source = match source {
        realip_core::Source::Peer => &conn.client_source,
        read_further => read_further,
    };
    tracing::info!(
        peer = %conn.peer,
        %client,
        %source,
        backend = %OrDash(done.backend),
        status = done.status,
        tries = done.tries,
        micros = started.map_or(0, |t| t.elapsed().as_micros() as u64),
        "request"
    );
}

/// An address, or `-` when there is none.
pub(crate) struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}
