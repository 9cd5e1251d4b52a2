//! Health checks: the verdicts as pure state (how many checks in a row must
//! pass (rise) or fail (fall) to flip a backend, and what weight a check's
//! answer gives it), and one probe (a TCP connect, or an HTTP GET judged by
//! its status and the weight it reports), bounded by a timeout. The pool
//! runs the rounds ([`crate::pool::run_checks`]).

/// A backend's health as the checks have seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    up: bool,
    /// Checks in a row that disagreed with `up`.
    streak: u32,
    /// The weight the last passing check reported, if it reported one.
    reported: Option<u32>,
}

/// What a check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// The backend went down.
    Down,
    /// The backend came back.
    Up,
    /// Still up, with a new reported weight.
    Reweighted,
}

/// One check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Failed, and why.
    Fail(ProbeFailure),
    /// Passed, maybe with a weight from the answer.
    Pass(Option<u32>),
}

/// Why a health check failed, for the log line that takes a backend out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The connect was refused or failed, or the request could not be sent.
    #[error("refused")]
    Refused,
    /// No whole answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// An answer with a status that does not pass.
    #[error("status {0}")]
    Status(u16),
    /// An answer that is no HTTP response.
    #[error("malformed answer")]
    Malformed,
}

impl Health {
    /// A backend not yet checked: up, as HAProxy and nginx start servers,
    /// so a pool serves before its first check round completes.
    pub fn new() -> Self {
        Health {
            up: true,
            streak: 0,
            reported: None,
        }
    }

    /// Whether the backend takes traffic.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The weight to schedule with: the configured one, or what the checks
    /// report (a node's local endpoint count), and 0 when down.
    pub fn weight(&self, configured: u32) -> u32 {
        if !self.up {
            return 0;
        }
        self.reported.unwrap_or(configured)
    }

    /// Record a check: `rise` passes in a row bring a down backend back,
    /// `fall` failures in a row take an up one out (both at least 1).
    pub fn observe(&mut self, probe: Probe, rise: u32, fall: u32) -> Change {
        let agrees = matches!(probe, Probe::Pass(_)) == self.up;
        if agrees {
            self.streak = 0;
        } else {
            self.streak += 1;
        }
        let mut change = Change::None;
        if !agrees {
            let needed = if self.up { fall } else { rise };
            if self.streak >= needed.max(1) {
                self.up = !self.up;
                self.streak = 0;
                change = if self.up { Change::Up } else { Change::Down };
            }
        }
        if let (true, Probe::Pass(w)) = (self.up, probe) {
            if w != self.reported {
                self.reported = w;
                if change == Change::None {
                    change = Change::Reweighted;
                }
            }
        }
        change
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// The weight a kube-proxy health answer reports: the
/// `X-Load-Balancing-Endpoint-Weight` header, else `localEndpoints` in the
/// JSON body. A node with two local pods is worth two shares; 0 takes it
/// out (kube-proxy answers 503 then anyway).
pub fn reported_weight<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Option<u32> {
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("x-load-balancing-endpoint-weight") {
            if let Ok(w) = value.trim().parse() {
                return Some(w);
            }
        }
    }
    // `"localEndpoints": N` without a JSON parser: the body is small and
    // this is the only field wanted.
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("\"localEndpoints\"")? + "\"localEndpoints\"".len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_takes_out_rise_brings_back() {
        let mut h = Health::new();
        assert!(h.is_up());
        assert_eq!(
            h.observe(Probe::Fail(ProbeFailure::Refused), 2, 3),
            Change::None
        );
        assert_eq!(
            h.observe(Probe::Fail(ProbeFailure::Refused), 2, 3),
            Change::None
        );
        // A pass in between resets the count.
        assert_eq!(h.observe(Probe::Pass(None), 2, 3), Change::None);
        for _ in 0..2 {
            assert_eq!(
                h.observe(Probe::Fail(ProbeFailure::Refused), 2, 3),
                Change::None
            );
        }
        assert_eq!(
            h.observe(Probe::Fail(ProbeFailure::Refused), 2, 3),
            Change::Down
        );
        assert_eq!(h.weight(5), 0);
        assert_eq!(h.observe(Probe::Pass(None), 2, 3), Change::None);
        assert_eq!(h.observe(Probe::Pass(None), 2, 3), Change::Up);
        assert_eq!(h.weight(5), 5);
    }

    #[test]
    fn reported_weights_override_the_configured_one() {
        let mut h = Health::new();
        assert_eq!(h.observe(Probe::Pass(Some(2)), 1, 1), Change::Reweighted);
        assert_eq!(h.weight(1), 2);
        assert_eq!(h.observe(Probe::Pass(Some(2)), 1, 1), Change::None);
        assert_eq!(h.observe(Probe::Pass(Some(1)), 1, 1), Change::Reweighted);
        assert_eq!(h.weight(7), 1);
    }

    #[test]
    fn weights_from_kube_proxy_answers() {
        let body = b"{\n\t\"service\": {\n\t\t\"namespace\": \"demo\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}\n";
        assert_eq!(reported_weight([], body), Some(2));
        assert_eq!(
            reported_weight([("X-Load-Balancing-Endpoint-Weight", "3")], body),
            Some(3)
        );
        assert_eq!(reported_weight([], b"ok"), None);
        assert_eq!(reported_weight([], b"{\"localEndpoints\": x}"), None);
        assert_eq!(reported_weight([], &[0xff, 0xfe]), None);
    }
}

/// How a pool's backends are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect within the timeout passes.
    Tcp,
    /// `GET path` answering `expect` (any 2xx when `None`) within the
    /// timeout passes; the answer may carry a weight
    /// ([`reported_weight`]). Any path of a kube-proxy healthCheckNodePort
    /// works.
    Http {
        /// The path (and query).
        path: String,
        /// The one status that passes.
        expect: Option<u16>,
    },
}

/// Text that is not a health [`Check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a health check: tcp, http:/PATH (2xx passes) or http:CODE:/PATH")]
pub struct BadCheck {
    /// The text given.
    pub value: String,
}

impl std::str::FromStr for Check {
    type Err = BadCheck;

    fn from_str(s: &str) -> Result<Self, BadCheck> {
        let bad = || BadCheck { value: s.into() };
        match s.split_once(':') {
            None if s == "tcp" => Ok(Check::Tcp),
            Some(("http", path)) if path.starts_with('/') => Ok(Check::Http {
                path: path.to_string(),
                expect: None,
            }),
            Some(("http", rest)) => {
                let (code, path) = rest.split_once(':').ok_or_else(bad)?;
                let code: u16 = code.parse().map_err(|_| bad())?;
                if !(100..600).contains(&code) || !path.starts_with('/') {
                    return Err(bad());
                }
                Ok(Check::Http {
                    path: path.to_string(),
                    expect: Some(code),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Largest health answer read (head and body): kube-proxy's is about 150
/// bytes.
const MAX_ANSWER: usize = 16 * 1024;

/// Check one backend once.
pub async fn probe(
    check: &Check,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Probe {
    match tokio::time::timeout(timeout, probe_inner(check, addr)).await {
        Ok(p) => p,
        Err(_) => Probe::Fail(ProbeFailure::Timeout),
    }
}

async fn probe_inner(check: &Check, addr: std::net::SocketAddr) -> Probe {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return Probe::Fail(ProbeFailure::Refused);
    };
    let (path, expect) = match check {
        Check::Tcp => return Probe::Pass(None),
        Check::Http { path, expect } => (path, *expect),
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: realip-lb\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return Probe::Fail(ProbeFailure::Refused);
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while buf.len() < MAX_ANSWER {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n.min(MAX_ANSWER - buf.len())]),
        }
    }
    judge(&buf, expect)
}

/// A health answer's verdict: 2xx passes, with the weight it reports.
fn judge(answer: &[u8], expect: Option<u16>) -> Probe {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let Some(status) = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
    else {
        return Probe::Fail(ProbeFailure::Malformed);
    };
    let passes = match expect {
        Some(code) => status == code,
        None => (200..300).contains(&status),
    };
    if !passes {
        return Probe::Fail(ProbeFailure::Status(status));
    }
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()));
    Probe::Pass(reported_weight(headers, body.as_bytes()))
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_status_and_weight() {
        assert_eq!(judge(b"HTTP/1.1 200 OK\r\n\r\n", None), Probe::Pass(None));
        assert_eq!(
            judge(
                b"HTTP/1.1 200 OK\r\nX-Load-Balancing-Endpoint-Weight: 2\r\n\r\n{}",
                None
            ),
            Probe::Pass(Some(2))
        );
        assert_eq!(
            judge(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", None),
            Probe::Fail(ProbeFailure::Status(503))
        );
        assert_eq!(
            judge(b"garbage", None),
            Probe::Fail(ProbeFailure::Malformed)
        );
        assert_eq!(judge(b"", None), Probe::Fail(ProbeFailure::Malformed));
        // An expected status: that one only.
        assert_eq!(
            judge(b"HTTP/1.1 204 No Content\r\n\r\n", Some(204)),
            Probe::Pass(None)
        );
        assert_eq!(
            judge(b"HTTP/1.1 200 OK\r\n\r\n", Some(204)),
            Probe::Fail(ProbeFailure::Status(200))
        );
        assert_eq!(
            "http:204:/ready?x=1".parse::<Check>(),
            Ok(Check::Http {
                path: "/ready?x=1".into(),
                expect: Some(204)
            })
        );
        assert!("http:99:/x".parse::<Check>().is_err());
        assert!("http:200:x".parse::<Check>().is_err());
        assert_eq!(judge(b"", None), Probe::Fail(ProbeFailure::Malformed));
        assert_eq!("tcp".parse::<Check>(), Ok(Check::Tcp));
        assert_eq!(
            "http:/healthz".parse::<Check>(),
            Ok(Check::Http {
                path: "/healthz".into(),
                expect: None
            })
        );
        assert!("http:healthz".parse::<Check>().is_err());
    }
}
