//! realip-lb: the seeds' cloud load balancer and ingress. Scheduling and
//! health verdicts (pure), pools with health checks ([`pool`]), the L4
//! proxies, TCP ([`tcp`]: `none`, `proxy-v1`, `proxy-v2` with TLVs
//! ([`proxy_send`], the PROXY send and relay roles), `transparent`) and UDP ([`udp`]: a flow table, PROXY v2 per datagram),
//! the L7 proxy ([`http`], with its HTTP/1.x fast path, routes
//! [`route`] and realip-http's forwarding-header plan [`forward`]), the YAML
//! configuration ([`config`]) and running it with in-place reloads
//! ([`server`]).
//!
//! [`Schedule`] ([`schedule`]) picks a backend for a request or a flow by the configured
//! [`Method`]: round robin, smooth weighted round robin (nginx's), least
//! connections (weighted), source-IP hash (ULB's `vserver-method: source`),
//! or Maglev (Eisenbud et al., NSDI 2016). A schedule is built from the
//! backends that are up, with their weights, whenever health or weights
//! change; building is the slow part (Maglev fills a table of a prime
//! M > 100·N entries) and stays off the request path, which only reads.
//!
//! Weights are how the seeds' imbalance is fixed: a node whose health
//! check reports `localEndpoints: N` is weighted N, so each pod behind a
//! Local Service gets an equal share; weight 0 takes a backend out.
//!
//! What it must not do: I/O outside [`pool`], [`metrics`], [`tcp`],
//! [`udp`], [`http`] and [`server`] (the
//! planning parts, [`config`], [`route`], [`chunked`] and the
//! scheduler, stay pure), a wait without a deadline,
//! or a pick whose cost grows with the number of backends for Maglev and
//! source hash (both are table or hash lookups).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chunked;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub use realip_http::forward;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod proxy_send;
pub mod route;
pub mod schedule;
pub mod server;
pub mod tcp;
pub mod udp;

pub use schedule::{Backend, Method, Picked, Schedule};
