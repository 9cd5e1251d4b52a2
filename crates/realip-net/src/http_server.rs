//! The one hyper server configuration whoami and the lb share, so their
//! limits and write pattern cannot drift apart.

use std::time::Duration;

use crate::timer::ConnTimer;

/// A hyper server for HTTP/1.1 and h2 as whoami and the lb serve it: one
/// timer per HTTP/1 connection for the head deadline ([`ConnTimer`]), heads
/// capped at `max_header_bytes` (hyper refuses HTTP/1 buffers under
/// 8 KiB), one flat write per response (a write(2) beats writev's two
/// iovecs for small answers: bench/whoami.sh), at most 256 h2 streams.
pub fn http_server(
    header_timeout: Duration,
    max_header_bytes: usize,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(ConnTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header_bytes.max(8192))
        .writev(false);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    builder
}
