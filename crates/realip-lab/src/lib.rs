//! realip-lab: the whole cluster on one machine, in network namespaces.
//!
//! [`topology`] plans the hosts (pure) and builds them, guaranteeing
//! teardown. [`scenario`] holds the seeds' paths as data (pure), [`run`]
//! runs one on the real kernel and checks what whoami reported, and
//! [`report`] prints the table, the JSON and the HTML report (pure).
//! [`k8s`] puts a real control plane under a scenario (`--api`), and
//! [`compare`] sets runs under different node agents side by side.
//!
//! What it must not do: touch the host's own network namespace, reach any
//! address outside the namespaces it made, or leave namespaces behind.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compare;
pub mod k8s;
pub mod manifest;
mod process;
pub mod report;
pub mod run;
pub mod scenario;
pub mod topology;

pub use process::ProcError;
