//! Why the lab's control plane could not be used.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::ProcError;

/// Why the lab's control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// Some of the binaries are not there.
    #[error(
        "{}: no {} (build them with scripts/k8s, or point --k8s-bin or REALIP_K8S_BIN at a \
         directory that has them)",
        dir.display(),
        missing.join(", ")
    )]
    Missing {
        /// The directory looked in.
        dir: PathBuf,
        /// The binaries not found there.
        missing: Vec<String>,
    },
    /// A file of the control plane could not be written or read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// openssl could not be run or refused a step.
    #[error("openssl {step}: {reason} (the lab makes its certificates with openssl)")]
    Openssl {
        /// The step (`req`, `x509`, ...).
        step: String,
        /// What went wrong.
        reason: String,
    },
    /// A component could not be started, or did not get ready.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// A component did not get ready in time.
    #[error("{what} not ready within {timeout:?}: {last}")]
    NotReady {
        /// The component.
        what: String,
        /// How long it had.
        timeout: Duration,
        /// What it or the last check said.
        last: String,
    },
    /// A component exited.
    #[error("{what} exited ({status}): {last}")]
    Exited {
        /// The component.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its last log lines, newest first.
        last: String,
    },
    /// kubectl could not be run.
    #[error("kubectl {args}: {source}")]
    KubectlStart {
        /// Its arguments.
        args: String,
        /// Why.
        source: std::io::Error,
    },
    /// kubectl failed.
    #[error("kubectl {args}: {stderr}")]
    Kubectl {
        /// Its arguments (without the kubeconfig).
        args: String,
        /// What it said.
        stderr: String,
    },
    /// kubectl's answer was not the JSON asked for.
    #[error("kubectl {args}: not JSON: {reason}")]
    KubectlJson {
        /// Its arguments.
        args: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The scenario cannot be expressed as API objects.
    #[error(transparent)]
    Translate(#[from] super::objects::TranslateError),
    /// The EndpointSlice controller did not write what the scenario's
    /// slices say.
    #[error("the EndpointSlices did not reach the scenario's within {timeout:?}: {differences}")]
    Slices {
        /// How long they had.
        timeout: Duration,
        /// What differs, Service by Service.
        differences: String,
    },
    /// A step's change did not settle.
    #[error("after {step:?}, the cluster did not settle within {timeout:?}: {differences}")]
    Settle {
        /// The step.
        step: String,
        /// How long it had.
        timeout: Duration,
        /// What still differed.
        differences: String,
    },
    /// The run was interrupted (SIGINT, SIGTERM).
    #[error("interrupted")]
    Interrupted,
}
