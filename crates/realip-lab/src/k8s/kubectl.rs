//! The built kubectl, run in the control plane's namespace with the lab's
//! admin kubeconfig. Each run is registered like any lab process, so a
//! Ctrl-C in the middle of one leaves nothing running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::topology;

use super::error::K8sError;

/// How long one request may take; kubectl gives up after it (an apiserver
/// that stopped answering must not hang the lab).
const REQUEST_TIMEOUT: &str = "--request-timeout=20s";

/// kubectl in a namespace, with a kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    netns: String,
    exe: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// kubectl `exe` in `netns` using `kubeconfig`; its discovery cache in
    /// `cache` (never ~/.kube: this cluster lives for one run).
    pub fn new(netns: &str, exe: &Path, kubeconfig: &Path, cache: &Path) -> Kubectl {
        Kubectl {
            netns: netns.to_string(),
            exe: exe.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            cache: cache.to_path_buf(),
        }
    }

    /// The kubeconfig it uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The command a person types to do the same: `ip netns exec NS
    /// kubectl --kubeconfig FILE`.
    pub fn command_line(&self) -> String {
        format!(
            "ip netns exec {} {} --kubeconfig {}",
            self.netns,
            self.exe.display(),
            self.kubeconfig.display()
        )
    }

    /// Run `kubectl ARGS` (with `input` on stdin); its stdout.
    pub fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<String, K8sError> {
        if topology::stopping() {
            return Err(K8sError::Interrupted);
        }
        let shown = args.join(" ");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(&self.exe)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg(REQUEST_TIMEOUT)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| K8sError::KubectlStart {
                args: shown.clone(),
                source,
            })?;
        let pid = child.id();
        topology::register_pid(pid);
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            // A write error shows up as kubectl's own complaint below.
            let _ = stdin.write_all(text);
        }
        let out = child.wait_with_output();
        topology::unregister_pid(pid);
        let out = out.map_err(|source| K8sError::KubectlStart {
            args: shown.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(K8sError::Kubectl {
                args: shown,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Write an object's status as its owner would (`kubectl patch KIND
    /// NAME [-n NS] --subresource=status --type=merge`): a Node's as its
    /// kubelet, a Pod's as the kubelet that runs it.
    pub fn patch_status(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        patch: &Value,
    ) -> Result<(), K8sError> {
        let patch = patch.to_string();
        let mut args = vec!["patch", kind, name];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        args.extend(["--subresource=status", "--type=merge", "-p", &patch]);
        self.run(&args, None).map(drop)
    }

    /// `kubectl get WHAT -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<Value, K8sError> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.run(&all, None)?;
        serde_json::from_str(&text).map_err(|e| K8sError::KubectlJson {
            args: all.join(" "),
            reason: e.to_string(),
        })
    }
}
