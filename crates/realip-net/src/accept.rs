//! The connection cap: back-pressure through the kernel's backlog instead of
//! accepting more than we can serve.

use std::time::Duration;

/// Accepts at most `cap` connections at a time: at the cap it stops
/// accepting and the kernel's backlog holds the rest (HAProxy's `maxconn`).
/// An accept error (out of descriptors and the like) backs off instead of
/// spinning.
#[derive(Debug)]
pub struct CappedAccept {
    listener: tokio::net::TcpListener,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl CappedAccept {
    /// `listener` with `cap` connections at once.
    pub fn new(listener: tokio::net::TcpListener, cap: usize) -> Self {
        CappedAccept {
            listener,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(cap)),
        }
    }

    /// The next connection and its slot (held until the connection ends),
    /// or `None` once `shutdown` turns true.
    pub async fn next(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::net::TcpStream,
        std::net::SocketAddr,
    )> {
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.ok()?,
            _ = shutdown.wait_for(|&v| v) => return None,
        };
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = shutdown.wait_for(|&v| v) => return None,
            };
            match accepted {
                Ok((s, peer)) => return Some((permit, s, peer)),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
