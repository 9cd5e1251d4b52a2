//! Phase 1 of the agents on the API: the lab copies what the apiserver
//! holds (Services, EndpointSlices, Nodes, as `kubectl get -o yaml` prints
//! them) into each node's objects file, which `realip node --objects`
//! polls. It proves the apiserver's allocation and the real EndpointSlice
//! controller before the agents watch the apiserver themselves.

use std::path::{Path, PathBuf};

use super::error::K8sError;
use super::kubectl::Kubectl;

/// What the agents read: the kinds `realip node` uses.
const KINDS: &str = "services,endpointslices.discovery.k8s.io,nodes";

/// Copies the apiserver's objects into files when they change.
#[derive(Debug)]
pub struct Mirror {
    files: Vec<PathBuf>,
    last: Option<String>,
}

impl Mirror {
    /// A mirror into `files` (one per node).
    pub fn new(files: Vec<PathBuf>) -> Mirror {
        Mirror { files, last: None }
    }

    /// The files it writes.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Read the objects now; if they differ from what was last written,
    /// write every file (each replaced whole, by a rename, so an agent
    /// never reads half of one). Whether it wrote.
    pub fn sync(&mut self, kubectl: &Kubectl) -> Result<bool, K8sError> {
        let text = kubectl.run(&["get", KINDS, "-A", "-o", "yaml"], None)?;
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        for f in &self.files {
            write_whole(f, &text)?;
        }
        self.last = Some(text);
        Ok(true)
    }
}

fn write_whole(path: &Path, text: &str) -> Result<(), K8sError> {
    let tmp = path.with_extension("yaml.tmp");
    let failed = |source| K8sError::File {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, text).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}
