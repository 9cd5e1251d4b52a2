//! The lab's hosts as network namespaces: a plan (pure) and a builder
//! (effects) that always tears down what it made.
//!
//! Layout, every address inside the lab's own namespaces:
//!
//! ```text
//! client 203.0.113.7 ── router (203.0.113.1 | 10.0.0.1) ── fabric bridge ─┬─ node-1 10.0.0.11 ── cbr0 10.244.1.1 ── pods 10.244.1.10..
//!                                                                         ├─ node-2 10.0.0.12 ── cbr0 10.244.2.1 ── pods 10.244.2.10..
//!                                                                         └─ control 10.0.0.2 (with --api: etcd, kube-apiserver,
//!                                                                            kube-controller-manager)
//! ```
//!
//! Nodes route each other's pod CIDRs over the fabric, as a flat cloud VPC
//! would; the router forwards between the client and the nodes. The
//! control plane is one more host on the fabric, as a managed cluster's
//! apiserver is one more address in the VPC.

mod hosts;
mod lab;
mod plan;

pub use hosts::{
    node_ip, node_ip6, node_pod_cidr6, node_pod_gateway, node_pod_gateway6, pod_ip, pod_ip6,
    unique_id, Host, Plan, Role, Spec, Step, CLIENT_IP, CLIENT_IP6, CONTROL_IP, CONTROL_IP6,
    FABRIC_GATEWAY6, PREFIX, ROUTER_IP6,
};
pub use lab::{
    check_support, clean, clean_prefix, register_dir, register_pid, stopping, unregister_dir,
    unregister_pid, Lab, LabError,
};
pub use plan::{plan, PlanError};
