//! The configuration as a whole, and its pools.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::listener::ListenerSpec;
use super::values::{Addr, BackendSpec, CheckField, Dur, MethodField};
use crate::Method;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Backend pools by name.
    pub pools: BTreeMap<String, PoolSpec>,
    /// Listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Serve Prometheus metrics here.
    pub metrics: Option<Addr>,
    /// On SIGTERM, how long open connections may finish (default 10s).
    pub grace: Dur,
}

/// A pool of backends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// How backends are picked.
    #[serde(default = "default_method")]
    pub schedule: MethodField,
    /// The backends.
    pub backends: Vec<BackendSpec>,
    /// Health checks; without them every backend is up.
    #[serde(default)]
    pub health: Option<HealthSpec>,
}

fn default_method() -> MethodField {
    MethodField(Method::RoundRobin)
}

/// Health checks of a pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `tcp` or `http:/PATH`.
    pub check: CheckField,
    /// Check this port of each backend's address (a healthCheckNodePort).
    #[serde(default)]
    pub port: Option<u16>,
    /// Time between rounds.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Longest a check may take.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Passes in a row that bring a backend back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Failures in a row that take it out.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
