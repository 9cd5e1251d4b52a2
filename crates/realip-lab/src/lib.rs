//! realip-lab: the whole cluster on one machine, in network namespaces.
//!
//! [`topology`] plans the hosts (pure) and builds them, guaranteeing
//! teardown. Scenarios and reports build on it.
//!
//! What it must not do: touch the host's own network namespace, reach any
//! address outside the namespaces it made, or leave namespaces behind.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod topology;
