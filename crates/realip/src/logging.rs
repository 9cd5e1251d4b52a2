//! Logging setup and signals, shared by the long-running subcommands.

/// Logs go to stderr through `tracing`; `RUST_LOG` filters (default
/// info, without kube-rs's own lines about failed requests: realip-kube
/// logs each failed watch once, with the server, the resource and the
/// API's message, and kube-rs would say it again, less completely).
pub fn init(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,kube_client::client::builder=off,kube_runtime::watcher=off",
        )
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM"),
                _ = i.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            // Without signal handlers the process still stops on Ctrl-C's
            // default action; wait forever here.
            std::future::pending::<()>().await
        }
    }
}

/// Write to stdout without panicking: a closed pipe (`| head`) ends the
/// output quietly, as the shell tools do; other errors are reported.
pub fn print_out(text: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("realip: writing to stdout: {e}");
            false
        }
    }
}

/// Stream a large value to stdout through a buffer, without building the
/// whole text in memory first; same pipe handling as [`print_out`].
pub fn print_display(value: &impl std::fmt::Display) -> bool {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match write!(out, "{value}").and_then(|_| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("realip: writing to stdout: {e}");
            false
        }
    }
}
