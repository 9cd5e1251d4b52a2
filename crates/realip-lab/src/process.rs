//! The processes a scenario starts in its namespaces: started through
//! `ip netns exec`, registered for teardown, and stopped by PID when dropped.
//! The lab's own components (agents, pods, the LB) and, with `--api`, the
//! control plane's all run this way.
//!
//! Each tells us it is ready the way systemd's `Type=notify` services do: a
//! `READY=1` datagram on a Unix socket of ours, named in `NOTIFY_SOCKET`. The
//! socket is a path in a private directory, so it reaches the process in any
//! network namespace, and no one else can write to it; log lines are for
//! people and are only kept to explain a process that never got ready.

use std::io::{BufRead, BufReader, Read, Seek};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::topology;

/// How long a component may take to start.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a process could not be started or did not get ready.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The run was interrupted (SIGINT, SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// A component could not be started.
    #[error("starting {what}: {source}")]
    Start {
        /// The component.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A component's stderr could not be read.
    #[error("no stderr")]
    NoStderr,
    /// The readiness socket failed.
    #[error("the readiness socket: {0}")]
    Notify(#[source] std::io::Error),
    /// A component did not say that it was ready.
    #[error("{what} did not say READY=1 within {timeout:?} (exit {status:?}): {last}")]
    NotReady {
        /// The component.
        what: String,
        /// How long it had.
        timeout: Duration,
        /// Its exit status, if it exited.
        status: Option<ExitStatus>,
        /// Its last lines (newest first, ` | ` between).
        last: String,
    },
}

/// Where a process's stderr goes.
enum Stderr {
    /// Lines on a channel: our own components, which log little.
    Lines(mpsc::Receiver<String>),
    /// A file: the control plane's components, which log a lot and whose
    /// logs a person exploring `lab up` reads.
    File(PathBuf),
}

/// How often to look whether a process that is not ready yet has exited.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// A process started in a namespace, its stderr lines on a channel and its
/// readiness socket; stopped by its PID when dropped.
pub(crate) struct Proc {
    child: Child,
    stderr: Stderr,
    ready: UnixDatagram,
    ready_path: PathBuf,
    pub(crate) what: String,
}

impl Proc {
    /// Start `exe args` in `netns`; `dir` is the scenario's private
    /// directory, where its readiness socket lives.
    pub(crate) fn start(
        netns: &str,
        dir: &Path,
        exe: &Path,
        args: &[String],
        what: &str,
    ) -> Result<Proc, ProcError> {
        Proc::spawn(netns, dir, exe, args, what, None)
    }

    /// As [`Proc::start`], with stderr written to `log`.
    pub(crate) fn start_logged(
        netns: &str,
        dir: &Path,
        exe: &Path,
        args: &[String],
        what: &str,
        log: &Path,
    ) -> Result<Proc, ProcError> {
        Proc::spawn(netns, dir, exe, args, what, Some(log))
    }

    fn spawn(
        netns: &str,
        dir: &Path,
        exe: &Path,
        args: &[String],
        what: &str,
        log: Option<&Path>,
    ) -> Result<Proc, ProcError> {
        if topology::stopping() {
            return Err(ProcError::Interrupted);
        }
        let failed = |source| ProcError::Start {
            what: what.to_string(),
            source,
        };
        let ready_path = dir.join(format!("ready-{}.sock", next_socket()));
        let ready = UnixDatagram::bind(&ready_path).map_err(failed)?;
        let stderr = match log {
            Some(f) => Stdio::from(std::fs::File::create(f).map_err(failed)?),
            None => Stdio::piped(),
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &ready_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(failed)?;
        topology::register_pid(child.id());
        let stderr = match log {
            Some(f) => Stderr::File(f.to_path_buf()),
            None => {
                let pipe = child.stderr.take().ok_or(ProcError::NoStderr)?;
                let (tx, lines) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
                Stderr::Lines(lines)
            }
        };
        Ok(Proc {
            child,
            stderr,
            ready,
            ready_path,
            what: what.to_string(),
        })
    }

    /// Its exit status, once it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its last three stderr lines, newest first, ` | ` between.
    pub(crate) fn last_lines(&mut self) -> String {
        let lines: Vec<String> = match &self.stderr {
            Stderr::Lines(rx) => rx.try_iter().collect(),
            Stderr::File(f) => tail(f),
        };
        lines
            .iter()
            .rev()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Wait until the process says `READY=1`; fail at once if it exits
    /// first, and after [`START_TIMEOUT`] if it says nothing.
    pub(crate) fn wait_ready(&mut self) -> Result<(), ProcError> {
        self.wait_ready_within(START_TIMEOUT)
    }

    /// [`Proc::wait_ready`] with another limit (a component that starts
    /// slowly on a loaded machine: etcd).
    pub(crate) fn wait_ready_within(&mut self, timeout: Duration) -> Result<(), ProcError> {
        let deadline = Instant::now() + timeout;
        let not_ready = |p: &mut Proc| ProcError::NotReady {
            what: p.what.clone(),
            timeout,
            status: p.exited(),
            last: p.last_lines(),
        };
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || matches!(self.child.try_wait(), Ok(Some(_))) {
                return Err(not_ready(self));
            }
            self.ready
                .set_read_timeout(Some(left.min(EXIT_POLL)))
                .map_err(ProcError::Notify)?;
            match self.ready.recv(&mut buf) {
                Ok(n) if says_ready(&buf[..n]) => return Ok(()),
                // STATUS= alone, or another notification: keep waiting.
                Ok(_) => {}
                // A signal (the lab's own handler's, a child's exit) may
                // interrupt the wait; it goes on.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(ProcError::Notify(e)),
            }
        }
    }
}

/// The last lines of a log file (its last 4 KiB).
fn tail(path: &Path) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(4096)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
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
