//! The L7 proxy: the seeds' HTTP load balancer (ULB7, SLB layer 7) and
//! ingress controller. HTTP/1.1, h2 (TLS, by ALPN) and h2c (prior
//! knowledge) in; HTTP/1.1 with pooled connections out. Requests are
//! routed by host and path prefix ([`crate::route`]), their forwarding
//! headers rewritten ([`crate::forward`]), and sent to a backend the
//! route's pool schedules.
//!
//! Errors, as nginx and HAProxy answer them: no route 404, a malformed
//! request 400 and an oversized head 431 (hyper's), no backend up 503, a
//! backend that cannot be reached or breaks off 502, no response head
//! within the response timeout 504. A request that never reached a
//! backend is retried on another one whatever its method; one that did is
//! retried only when it is idempotent and has no body.
//!
//! The rooms, each using only those before it: [`limits`] and
//! [`answer`] (pure), [`upstream`] (the backend pools), [`site`] (what a
//! listener's connections share), [`attempts`] (the retry policy, pure),
//! the wire fast path [`wire`] and the hyper path [`hyper_path`], and the
//! listener that picks one per connection ([`listener`]).

pub(crate) mod answer;
pub(crate) mod attempts;
pub(crate) mod hyper_path;
pub mod limits;
pub(crate) mod listener;
pub(crate) mod log;
pub mod site;
pub mod upstream;
pub(crate) mod wire;

pub use hyper_path::RespBody;
pub use limits::HttpLimits;
pub use listener::serve;
pub use site::{HttpStats, Shared, Site};
