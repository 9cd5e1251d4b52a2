//! Where the Kubernetes binaries are: `--k8s-bin DIR`, else
//! `REALIP_K8S_BIN`, else `target/k8s/bin` beside the workspace, where
//! `scripts/k8s` builds them.

use std::path::{Path, PathBuf};

use super::error::K8sError;

/// The binaries `--api` runs (kube-proxy is built too, but realip node
/// plays its role).
pub const BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

/// The environment variable naming the binaries' directory.
pub const ENV: &str = "REALIP_K8S_BIN";

/// A directory that holds every one of [`BINARIES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sBin {
    dir: PathBuf,
}

impl K8sBin {
    /// `target/k8s/bin` of the workspace this crate was built in: where
    /// `scripts/k8s` puts them. Known at build time, so an installed
    /// binary still finds a checkout's build.
    pub fn workspace_dir() -> PathBuf {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        crate_dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(crate_dir)
            .join("target/k8s/bin")
    }

    /// The directory to look in: `flag`, else [`ENV`], else
    /// [`K8sBin::workspace_dir`].
    pub fn choose(flag: Option<&Path>) -> PathBuf {
        match (flag, std::env::var_os(ENV)) {
            (Some(dir), _) => dir.to_path_buf(),
            (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
            _ => Self::workspace_dir(),
        }
    }

    /// The binaries in `dir`, or which are missing.
    pub fn find(dir: &Path) -> Result<K8sBin, K8sError> {
        let missing: Vec<String> = BINARIES
            .iter()
            .filter(|b| !is_executable(&dir.join(b)))
            .map(|b| b.to_string())
            .collect();
        if missing.is_empty() {
            Ok(K8sBin {
                dir: dir.to_path_buf(),
            })
        } else {
            Err(K8sError::Missing {
                dir: dir.to_path_buf(),
                missing,
            })
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One binary's path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_are_named() {
        let dir = std::env::temp_dir().join(format!("realip-k8s-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("etcd"), "").unwrap();
        let e = K8sBin::find(&dir).unwrap_err().to_string();
        // etcd exists but cannot be run: it counts as missing.
        assert!(
            e.contains("no etcd, kube-apiserver, kube-controller-manager, kubectl"),
            "{e}"
        );
        assert!(e.contains("scripts/k8s"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_flag_wins() {
        assert_eq!(K8sBin::choose(Some(Path::new("/x"))), PathBuf::from("/x"));
        assert!(K8sBin::workspace_dir().ends_with("target/k8s/bin"));
    }
}
