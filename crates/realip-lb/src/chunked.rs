//! Where a chunked body ends (RFC 9112 §7.1), found while its bytes are
//! passed through unchanged: the proxy needs to know when a response is
//! over to reuse the backend connection, not the data itself.

/// A chunk-size line longer than this (extensions included) is refused.
const MAX_LINE: usize = 4096;
/// Trailer fields longer than this in total are refused.
const MAX_TRAILER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size: only `;` or CR may follow.
    ExtBws,
    /// In the extensions after the size, up to CR.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting CR, then LF, after chunk data.
    DataCr,
    DataLf,
    /// In the trailer section, at the start of a line.
    TrailerLineStart,
    /// Inside a trailer field's name.
    TrailerName,
    /// Inside a trailer field's value.
    TrailerValue,
    /// Expecting LF after a CR.
    TrailerLf {
        empty: bool,
    },
    /// The body is over.
    Done,
}

/// A control byte other than HTAB.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A byte of an RFC 9110 token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkedError(&'static str);

/// Tracks a chunked body byte by byte (data runs are skipped in one step).
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    size: u64,
    line: usize,
    trailer: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
            trailer: 0,
        }
    }
}

impl Chunked {
    /// Whether the last chunk and the trailer have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed the next bytes; returns how many of them belong to the body
    /// (fewer than `buf.len()` only when the body ended inside `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Done => return Ok(i),
                State::Size { digits } => {
                    let d = match b {
                        b'0'..=b'9' => Some(b - b'0'),
                        b'a'..=b'f' => Some(b - b'a' + 10),
                        b'A'..=b'F' => Some(b - b'A' + 10),
                        _ => None,
                    };
                    match (d, digits) {
                        (Some(_), 16..) => return Err(ChunkedError("chunk size too large")),
                        (Some(d), _) => {
                            self.size = self.size << 4 | u64::from(d);
                            self.state = State::Size { digits: digits + 1 };
                        }
                        (None, 0) => return Err(ChunkedError("no chunk size")),
                        (None, _) if b == b'\r' => self.state = State::SizeLf,
                        (None, _) if b == b';' => self.state = State::Ext,
                        (None, _) if b == b' ' || b == b'\t' => self.state = State::ExtBws,
                        (None, _) => return Err(ChunkedError("bad chunk size")),
                    }
                    self.line += 1;
                }
                State::ExtBws => {
                    match b {
                        b' ' | b'\t' => {}
                        b';' => self.state = State::Ext,
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(ChunkedError("bad chunk size")),
                    }
                    self.line += 1;
                }
                State::Ext => {
                    // Bytes pass through unchanged, so nothing a lenient
                    // reader could end the line at gets by: a bare LF, a
                    // NUL, any control byte but HTAB.
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' {
                        return Err(ChunkedError("bare LF in a chunk extension"));
                    } else if is_ctl(b) {
                        return Err(ChunkedError("control byte in a chunk extension"));
                    }
                    self.line += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError("CR without LF after a chunk size"));
                    }
                    self.line = 0;
                    self.state = if self.size == 0 {
                        State::TrailerLineStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let n = (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError("chunk data longer than its size"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError("CR without LF after chunk data"));
                    }
                    self.state = State::Size { digits: 0 };
                }
                // Trailer fields are `token ":" value` lines ending in CRLF
                // (RFC 9112 §7.1.2); no obs-fold, bare LF or control byte,
                // which a lenient client could split a response at.
                State::TrailerLineStart => {
                    self.state = if b == b'\r' {
                        State::TrailerLf { empty: true }
                    } else if is_tchar(b) {
                        State::TrailerName
                    } else {
                        return Err(ChunkedError("bad trailer field"));
                    };
                    self.trailer += 1;
                }
                State::TrailerName => {
                    if b == b':' {
                        self.state = State::TrailerValue;
                    } else if !is_tchar(b) {
                        return Err(ChunkedError("bad trailer field name"));
                    }
                    self.trailer += 1;
                }
                State::TrailerValue => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { empty: false };
                    } else if b == b'\n' {
                        return Err(ChunkedError("bare LF in the trailer"));
                    } else if is_ctl(b) {
                        return Err(ChunkedError("control byte in the trailer"));
                    }
                    self.trailer += 1;
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(ChunkedError("CR without LF in the trailer"));
                    }
                    self.state = if empty {
                        State::Done
                    } else {
                        State::TrailerLineStart
                    };
                }
            }
            if self.line > MAX_LINE {
                return Err(ChunkedError("chunk-size line too long"));
            }
            if self.trailer > MAX_TRAILER {
                return Err(ChunkedError("trailer too long"));
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Result<(usize, bool), ChunkedError> {
        let mut c = Chunked::default();
        let n = c.feed(body)?;
        Ok((n, c.is_done()))
    }

    #[test]
    fn finds_the_end_in_one_piece_or_byte_by_byte() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(whole(body), Ok((body.len() - 4, true)));
        let mut c = Chunked::default();
        let mut used = 0;
        for b in body.iter() {
            used += c.feed(std::slice::from_ref(b)).unwrap();
        }
        assert!(c.is_done());
        assert_eq!(used, body.len() - 4);
        assert_eq!(whole(b"0\r\n\r\n"), Ok((5, true)));
        assert_eq!(whole(b"3\r\nab"), Ok((5, false)));
        assert_eq!(whole(b"1 ;a=\"b c\"\r\nx\r\n0\r\n\r\n"), Ok((20, true)));
    }

    #[test]
    fn refuses_malformed_bodies() {
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"3\r\nabcd\r\n",
            b"3\rx",
            b"11111111111111111\r\n",
            b"3\r\nabc\rx",
            // Response splitting for a lenient reader (bare LF, NUL, CR).
            b"0\r\nX-T: 1\nX-Injected: 1\r\n\r\n",
            b"0\r\nX-T: a\x00b\r\n\r\n",
            b"0\r\n X-Folded: 1\r\n\r\n",
            b"0\r\nNo colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"1;a\x00b\r\nx\r\n0\r\n\r\n",
            b"1;a\nb\r\nx\r\n0\r\n\r\n",
            b"1 x\r\nx\r\n0\r\n\r\n",
        ] {
            assert!(whole(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"1;".as_slice(), &[b'a'; 5000]].concat();
        assert!(whole(&long).is_err());
    }
}
