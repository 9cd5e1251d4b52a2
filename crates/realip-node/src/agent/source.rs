//! Where the agent's objects come from: files here, the API server's
//! watches in realip-kube, behind one small trait.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::model::{Loader, Model, Skipped};

/// Why the objects could not be read. The agent keeps its last ruleset
/// and tries again at its next poll.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory of objects could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// What was given as the objects.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where the objects come from.
///
/// The agent asks for the [`version`](ObjectSource::version) at every
/// wake-up and reloads the whole state when it differs from the one it
/// last loaded. A file source is polled; a live source also says when to
/// look ([`changed`](ObjectSource::changed)), whether it has loaded
/// everything yet ([`ready`](ObjectSource::ready)) and whether it is in
/// touch with its origin ([`connected`](ObjectSource::connected)). The
/// defaults are a file's: always ready and connected, never woken.
pub trait ObjectSource {
    /// Changes whenever the objects may have.
    type Version: PartialEq;

    /// The version now (cheap: it is asked at every wake-up).
    fn version(&self) -> Self::Version;

    /// Read the whole current state; objects that cannot be used are
    /// skipped, each with its reason.
    fn load(&self) -> Result<(Model, Vec<Skipped>), SourceError>;

    /// Every list has loaded once. Before that a sync would program a
    /// partial state (Services without their endpoints, say), so the
    /// agent does not sync.
    fn ready(&self) -> bool {
        true
    }

    /// The source is in touch with where the objects come from. While it
    /// is not, the kernel keeps the last rules, but the agent stops
    /// counting itself healthy: `/healthz` turns 503 once the last good
    /// state is older than twice the sync period.
    fn connected(&self) -> bool {
        true
    }

    /// Resolves when the version may have moved on from `since`. Taking
    /// the version last seen, rather than "from now", loses no change
    /// that lands between the agent's look and its wait. A polled source
    /// never resolves it.
    fn changed(&self, since: &Self::Version) -> impl Future<Output = ()> {
        let _ = since;
        std::future::pending()
    }
}

/// Objects from a YAML/JSON file, or from every `.yaml`/`.yml`/`.json`
/// file in a directory.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The file or directory.
    pub path: PathBuf,
}

/// What a file source looks like now: each file's name, size and
/// modification time. A change in any of them means "reload".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl FileSource {
    /// Objects read from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource { path: path.into() }
    }

    fn read(&self) -> std::io::Result<(Model, Vec<Skipped>)> {
        let mut files = Vec::new();
        if self.path.is_dir() {
            for e in std::fs::read_dir(&self.path)? {
                let p = e?.path();
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                if matches!(ext, "yaml" | "yml" | "json") {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(self.path.clone());
        }
        let mut loader = Loader::default();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            loader.add_text(&text, &f.display().to_string());
        }
        Ok(loader.finish())
    }
}

impl ObjectSource for FileSource {
    type Version = Fingerprint;

    fn version(&self) -> Fingerprint {
        let stat = |p: &Path| {
            let m = std::fs::metadata(p).ok();
            (
                p.to_path_buf(),
                m.as_ref().map_or(0, |m| m.len()),
                m.and_then(|m| m.modified().ok()),
            )
        };
        Fingerprint(match std::fs::read_dir(&self.path) {
            Ok(dir) => {
                let mut out: Vec<_> = dir
                    .filter_map(|e| e.ok())
                    .map(|e| stat(&e.path()))
                    .collect();
                out.sort();
                out
            }
            Err(_) => vec![stat(&self.path)],
        })
    }

    fn load(&self) -> Result<(Model, Vec<Skipped>), SourceError> {
        self.read().map_err(|source| SourceError::Read {
            path: self.path.clone(),
            source,
        })
    }
}
