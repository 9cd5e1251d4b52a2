//! Bytes we write ourselves when hyper would only close: shared by whoami
//! and the lb so both answer a slow head the same way.

/// The answer to a request head that did not arrive in time (hyper closes
/// without a word; nginx says 408).
pub const ANSWER_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
