//! The configuration file (`realip lb --config FILE`): listeners and
//! backend pools in YAML, checked whole before anything runs (pure: no
//! I/O but reading the named file's text, done by the caller).
//!
//! ```yaml
//! pools:
//!   web:
//!     schedule: round-robin          # weighted-round-robin, least-connections, source-hash, maglev
//!     backends: [127.0.0.2:8080, "127.0.0.3:8080=2"]
//!     health: {check: "http:/healthz", interval: 2s, timeout: 1s, rise: 2, fall: 3}
//! listeners:
//!   - name: ingress
//!     mode: http                     # http, tcp or udp
//!     listen: 127.0.0.1:8080
//!     trusted: [loopback]
//!     underscores: drop              # or pass: other header names with `_`
//!     upgrades: [websocket]          # the Upgrade protocols spliced (h2c refused)
//!     routes:
//!       - {host: shop.example, path: /api, pool: web}
//!       - {path: /, pool: web}
//!   - name: l4
//!     mode: tcp
//!     listen: 127.0.0.1:9000
//!     pool: web
//!     client_ip: proxy-v2
//!     proxy_v2: {unique_id: true, crc32c: true}
//! metrics: 127.0.0.1:9100
//! grace: 10s
//! ```
//!
//! Each listener is an http, tcp or udp one ([`Mode`]), with that mode's
//! fields only: a field of another mode is refused naming the field and
//! the modes it is for.
//!
//! Every refusal ([`ConfigError`]: a typed [`Offence`]) has the line and
//! column the YAML reader gives: a value its type refuses, an unknown or
//! misplaced field, a key repeated in one mapping (at the second one). A
//! rule checked after reading (an undefined pool, a second listener on
//! one address, `accept_proxy` without `trusted`) names a key path, and
//! the reader finds that key (marks.rs).

mod check;
mod error;
mod listener;
mod marks;
mod model;
mod read;
#[cfg(test)]
mod tests;
mod values;

pub use error::*;
pub use listener::*;
pub use model::*;
pub use values::*;

impl Config {
    /// Parse and check `text`, read from `file` (named in errors).
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let refused = |(offence, at)| ConfigError {
            file: file.to_string(),
            at,
            offence,
        };
        // Each listener's mode first, so its fields can be checked against
        // it as they are read; the same walk refuses a repeated key.
        let modes = marks::outline(text).map_err(|e| refused(e.located(text)))?;
        let config = read::config(text, &modes).map_err(|e| refused(e.located(text)))?;
        // The rules between parts name a key; the reader finds it.
        config
            .checked()
            .map_err(|r| refused((r.offence, marks::locate(text, &r.key))))?;
        Ok(config)
    }
}
