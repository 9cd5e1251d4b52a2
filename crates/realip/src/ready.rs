//! Readiness, told as systemd's `Type=notify` services tell it: one
//! `READY=1` datagram to the Unix socket named by `NOTIFY_SOCKET`, sent once
//! the process serves (listeners bound, or the first sync programmed).
//!
//! Why not a log line: log lines are for people, and their wording may
//! change; whoever starts us (systemd, the lab, a test) needs a signal that
//! means exactly "ready" and that nothing else can fake by logging.

use std::os::unix::net::UnixDatagram;

/// Tell the supervisor we are ready, with a one-line `status` for people
/// (`systemctl status` shows it). Does nothing when no supervisor asked
/// (`NOTIFY_SOCKET` unset); a supervisor that went away is not our failure,
/// so a send error is only logged.
pub fn notify(status: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("READY=1\nSTATUS={}\n", status.replace('\n', " "));
    let sent = UnixDatagram::unbound().and_then(|s| send_to(&s, &path, message.as_bytes()));
    if let Err(e) = sent {
        tracing::warn!(socket = ?path, error = %e, "could not tell NOTIFY_SOCKET we are ready");
    }
}

/// A path, or `@name` for a socket in the abstract namespace (as systemd
/// passes them).
fn send_to(s: &UnixDatagram, path: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<usize> {
    use std::os::unix::ffi::OsStrExt;
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            s.send_to_addr(message, &addr)
        }
        None => s.send_to(message, path),
    }
}
