//! realip-node: the kube-proxy role, planned as data.
//!
//! One node sync, in the order it runs: [`model`] reads Services,
//! EndpointSlices and Nodes (the objects `kubectl get -o yaml` prints)
//! into typed values; [`plan`] turns them, for one node, into the desired
//! nftables ruleset: a plain value that golden tests pin down and that
//! renders to `nft -f` syntax. [`kernel`] encodes a plan as nf_tables
//! netlink messages (no `nft` binary at run time), and [`sync`] keeps the
//! kernel equal to the plan: the first sync replaces the tables, later
//! ones send only the difference, each one atomic transaction.
//! [`health`] answers the health checks byte for byte as kube-proxy does.
//! [`agent`] is the loop around them: it watches an object source (files
//! here, the API server through realip-kube), syncs on a change as
//! kube-proxy's bounded-frequency runner does, keeps the health servers
//! in line with the plan, and counts its syncs in [`metrics`].
//!
//! What it must not do: touch the kernel or the network from the model or
//! the plan (they are pure), or let one bad object stop the others.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod health;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod sync;
