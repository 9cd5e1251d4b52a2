//! What every scheduling algorithm is given and must answer: the
//! backends that are up, and which of them takes a flow.

use std::net::SocketAddr;

/// A backend as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Where it listens; also its identity for hashing, so it keeps its
    /// Maglev slots while others come and go.
    pub addr: SocketAddr,
    /// Its share relative to the others; 0 takes it out.
    pub weight: u32,
}

/// One scheduling algorithm, built once per set of backends (the slow
/// part, off the request path) and asked on every pick.
pub(crate) trait Select: std::fmt::Debug + Send + Sync {
    /// The index, in `backends` (never empty, every weight above 0), of the
    /// backend for a connection or request from `client` to `local`.
    fn pick(&self, backends: &[Backend], client: SocketAddr, local: SocketAddr) -> usize;

    /// A pick's connection or request is over (least connections counts
    /// them).
    fn done(&self, _index: usize) {}
}
