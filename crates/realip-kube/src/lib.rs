//! realip-kube: `realip node`'s objects from the live API server.
//!
//! [`config`] decides how the API server is reached (a kubeconfig, the
//! pod's service account, or `--master`); [`watch`] keeps three kube-rs
//! watches (the proxied Services, their EndpointSlices, this node's Node)
//! in reflector stores, as kube-proxy's informers do; [`source`] offers
//! those stores to realip-node's agent as an
//! [`ObjectSource`](realip_node::agent::ObjectSource), reduced to the
//! model by the same [`Loader`](realip_node::model::Loader) the files use.
//!
//! For `realip lb --service`, [`service_lb`] turns one Service and the
//! Nodes into a load balancer's pool as a cloud provider's service
//! controller would (pure), and [`lb_source`] watches those objects and
//! writes the Service's `status.loadBalancer`.
//!
//! It lives apart from realip-node so that the planner and its tests do
//! not build kube-rs. What it must not do: decide anything about the data
//! plane (that is the model's and the plan's), or give up on the API
//! server: every failure is logged and retried with backoff, and the
//! kernel keeps the last rules meanwhile.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod lb_source;
pub mod service_lb;
pub mod source;
pub mod watch;

pub use config::{connect, ApiAccess, ConfigError, Connection};
pub use lb_source::LbSource;
pub use source::ApiSource;
pub use watch::{InvalidName, Selection};
