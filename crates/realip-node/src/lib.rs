//! realip-node: the kube-proxy role, planned as data.
//!
//! [`model`] reads Services, EndpointSlices and Nodes (the objects
//! `kubectl get -o yaml` prints); [`plan::plan`] turns them, for one node,
//! into the desired nftables ruleset: a plain value that golden tests pin
//! down and that renders to `nft -f` syntax. [`kernel`] turns a plan into
//! one atomic nf_tables transaction over netlink (no `nft` binary at run
//! time); [`health`] answers the health checks.
//!
//! What it must not do: touch the kernel or the network from the model or
//! the plan (they are pure), or let one bad object stop the others.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod health;
pub mod kernel;
pub mod model;
pub mod plan;
pub mod sync;
