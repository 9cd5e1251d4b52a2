//! realip-trace: `realip node trace`, what a node's kernel does to one
//! packet, told by the kernel itself.
//!
//! [`probe`] parses the packet from the arguments and makes its bytes;
//! [`scratch`] plans the namespaces that replay it (the node, with the
//! ruleset realip node programs for it, and a sender, so the packet
//! arrives on an interface as a remote client's or a pod's does);
//! [`run`] builds them, sets the trace bit for that one 5-tuple, sends
//! the packet and reads back the nf_tables trace events, the rules and
//! pick maps they name, and conntrack's entry; [`explain`] turns that
//! into the verdict, the DNAT, the masquerade and their reasons, and
//! [`render`] into words.
//!
//! What it must not do: answer from the plan (the model only names the
//! Services the kernel's chains belong to), send anything outside the
//! namespaces it made (or, in the node's own namespace, more than the one
//! packet), or leave a namespace, a table or a process behind.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod explain;
pub mod probe;
pub mod render;
pub mod run;
pub mod scratch;

pub use explain::{Mode, Report, Verdict};
pub use probe::{Probe, ProbeError, Proto};
pub use run::{trace, Request, TraceError};
