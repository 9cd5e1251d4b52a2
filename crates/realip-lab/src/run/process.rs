//! The processes a scenario starts in its namespaces: started through
//! `ip netns exec`, registered for teardown, and stopped by PID when dropped.
//!
//! Each tells us it is ready the way systemd's `Type=notify` services do: a
//! `READY=1` datagram on a Unix socket of ours, named in `NOTIFY_SOCKET`. The
//! socket is a path in a private directory, so it reaches the process in any
//! network namespace, and no one else can write to it; log lines are for
//! people and are only kept to explain a process that never got ready.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::topology;

use super::error::RunError;

/// How long a component may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often to look whether a process that is not ready yet has exited.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// A process started in a namespace, its stderr lines on a channel and its
/// readiness socket; stopped by its PID when dropped.
pub(super) struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    ready: UnixDatagram,
    ready_path: PathBuf,
    pub(super) what: String,
}

impl Proc {
    /// Start `exe args` in `netns`; `dir` is the scenario's private
    /// directory, where its readiness socket lives.
    pub(super) fn start(
        netns: &str,
        dir: &Path,
        exe: &Path,
        args: &[String],
        what: &str,
    ) -> Result<Proc, RunError> {
        if topology::stopping() {
            return Err(RunError::Interrupted);
        }
        let ready_path = dir.join(format!("ready-{}.sock", next_socket()));
        let ready = UnixDatagram::bind(&ready_path).map_err(|source| RunError::Start {
            what: what.to_string(),
            source,
        })?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &ready_path)
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
            ready,
            ready_path,
            what: what.to_string(),
        })
    }

    /// Wait until the process says `READY=1`; fail at once if it exits
    /// first, and after [`START_TIMEOUT`] if it says nothing.
    pub(super) fn wait_ready(&mut self) -> Result<(), RunError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let not_ready = |p: &mut Proc| {
            let status = p.child.try_wait().ok().flatten();
            let seen: Vec<String> = p.lines.try_iter().collect();
            RunError::NotReady {
                what: p.what.clone(),
                timeout: START_TIMEOUT,
                status,
                last: seen
                    .iter()
                    .rev()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | "),
            }
        };
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || matches!(self.child.try_wait(), Ok(Some(_))) {
                return Err(not_ready(self));
            }
            self.ready
                .set_read_timeout(Some(left.min(EXIT_POLL)))
                .map_err(RunError::Notify)?;
            match self.ready.recv(&mut buf) {
                Ok(n) if says_ready(&buf[..n]) => return Ok(()),
                // STATUS= alone, or another notification: keep waiting.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(RunError::Notify(e)),
            }
        }
    }
}

/// Whether a notification carries `READY=1` (one assignment per line).
fn says_ready(message: &[u8]) -> bool {
    message.split(|&b| b == b'\n').any(|l| l == b"READY=1")
}

/// A number for each readiness socket of this process.
fn next_socket() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        topology::unregister_pid(self.child.id());
        let _ = std::fs::remove_file(&self.ready_path);
    }
}

#[cfg(test)]
mod tests {
    use super::says_ready;

    #[test]
    fn ready_only_when_the_message_says_so() {
        assert!(says_ready(b"READY=1\nSTATUS=listening\n"));
        assert!(says_ready(b"STATUS=x\nREADY=1"));
        assert!(!says_ready(b"STATUS=READY=1\n"));
        assert!(!says_ready(b"READY=0\n"));
        assert!(!says_ready(b""));
    }
}
