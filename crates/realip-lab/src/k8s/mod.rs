//! The lab on the real control plane (`--api`): etcd, kube-apiserver and
//! kube-controller-manager in a namespace of their own, the scenario's
//! objects applied with kubectl, and the lab playing the kubelet.
//!
//! [`bin`] finds the binaries, [`pki`] makes the run's certificates,
//! [`objects`] turns a scenario into API objects (pure) and [`slices`]
//! says whether the controller has written what they imply (pure);
//! [`pods`] places and follows the Pods the controllers make (pure);
//! [`control`] runs the components, [`kubectl`] talks to them, and
//! [`mirror`] copies the apiserver's objects to the agents' files.
//!
//! What it must not do: listen anywhere but the control namespace (the
//! apiserver on 10.0.0.2, etcd and the controller-manager on that
//! namespace's loopback), or keep a key or a process past the run.

pub mod bin;
pub mod control;
mod error;
pub mod kubectl;
pub mod mirror;
pub mod objects;
pub mod pki;
pub mod pods;
pub mod slices;

pub use bin::K8sBin;
pub use control::ControlPlane;
pub use error::K8sError;
