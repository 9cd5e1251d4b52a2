//! What every serving subcommand's process shares: its tokio runtime and
//! the parser of its durations.

/// A command-line duration, Go style (`10s`, `500ms`, `1h30m`), for every
/// subcommand's timeouts.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    realip_lb::config::parse_duration(s).map_err(|e| e.to_string())
}

/// The tokio runtime of a serving subcommand: `threads` workers (default
/// one per core); one thread is a current-thread runtime, with no
/// cross-thread wakeups.
pub(crate) fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut rt = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all().build()
}
