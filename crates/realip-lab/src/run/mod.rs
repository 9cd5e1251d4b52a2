//! Running a scenario for real: build its namespaces, start `realip node`
//! on every node, whoami (or another program) in every pod and `realip lb`
//! on the router, send the probes from inside the namespaces, and check
//! what whoami reported against what the scenario expects. Everything
//! started is stopped by its PID and the namespaces are deleted, whatever
//! happens.

mod agents;
mod cluster;
mod driver;
mod error;
mod judge;
mod nat;
mod netns;
mod probe;
mod result;

pub use agents::{AgentObjects, KubeProxyMode, Proxy};
pub use cluster::{Cluster, Options};
pub use driver::{remove_run_dir, run, run_dir};
pub use error::RunError;
pub use judge::judge;
pub use result::{Check, ProbeResult, ScenarioResult, Seen};
