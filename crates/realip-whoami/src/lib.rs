//! realip-whoami: the backend that shows what a pod really sees, and why.
//!
//! Three numbers where other whoami servers show one: the socket peer, what
//! every hop claimed (headers, PROXY header, client-IP field), and the client
//! resolved under the configured trust, with the reason. HTTP/1.1, h2c and
//! TLS (h2, optional mTLS) on one listener; a line protocol on TCP and UDP.
//!
//! What it must not do: believe a PROXY header or forwarding header from a
//! peer outside the trust set, guess whether a PROXY header is present, read
//! without bounds, wait without deadlines, or crash on any input.
#![forbid(unsafe_code)]

mod config;
mod conn;
mod endpoints;
#[doc(hidden)]
pub mod fuzz;
mod h1;
mod http_server;
mod line;
pub mod render;
mod server;
mod state;
mod tls;

pub use config::{Config, Limits};
pub use realip_core::field::FieldFormat;
pub use realip_net::parse_duration as parse_go_duration;
pub use realip_net::tls::TlsFiles;
pub use server::{Server, StartError};
pub use state::{State, Stats};
