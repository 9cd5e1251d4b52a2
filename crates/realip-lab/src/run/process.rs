//! The processes a scenario starts in its namespaces: started through
//! `ip netns exec`, registered for teardown, and stopped by PID when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::topology;

use super::error::RunError;

/// How long a component may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A process started in a namespace, its stderr lines on a channel;
/// stopped by its PID when dropped.
pub(super) struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub(super) what: String,
}

impl Proc {
    pub(super) fn start(
        netns: &str,
        exe: &Path,
        args: &[String],
        what: &str,
    ) -> Result<Proc, RunError> {
        if topology::stopping() {
            return Err(RunError::Interrupted);
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RunError::Start {
                what: what.to_string(),
                source,
            })?;
        topology::register_pid(child.id());
        let stderr = child.stderr.take().ok_or(RunError::NoStderr)?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            child,
            lines,
            what: what.to_string(),
        })
    }

    /// Wait for a log line containing `marker`.
    pub(super) fn wait_for(&mut self, marker: &str) -> Result<(), RunError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(marker) => return Ok(()),
                Ok(l) => seen.push(l),
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(RunError::NotReady {
                        what: self.what.clone(),
                        marker: marker.to_string(),
                        timeout: START_TIMEOUT,
                        status,
                        last: seen
                            .iter()
                            .rev()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" | "),
                    });
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        topology::unregister_pid(self.child.id());
    }
}
