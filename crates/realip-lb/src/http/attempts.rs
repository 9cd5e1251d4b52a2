//! Which backend a request tries next after one failed, or which answer
//! it gets instead: one pure policy for both paths.

use std::net::SocketAddr;

/// The backend to try after `tried` failed: the next one up in the
/// schedule's order after the last one tried, never one tried already.
pub(crate) fn another_backend(
    schedule: &crate::Schedule,
    tried: &[SocketAddr],
) -> Option<SocketAddr> {
    let all = schedule.backends();
    let from = tried
        .last()
        .and_then(|l| all.iter().position(|b| b.addr == *l))
        .map_or(0, |i| i + 1);
    all.iter()
        .cycle()
        .skip(from)
        .take(all.len())
        .find(|b| b.weight > 0 && !tried.contains(&b.addr))
        .map(|b| b.addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Method, Schedule};

    #[test]
    fn another_backend_goes_on_in_order_and_never_back() {
        let b = |a: &str, w| Backend {
            addr: a.parse().unwrap(),
            weight: w,
        };
        let s = Schedule::new(
            Method::RoundRobin,
            vec![
                b("127.0.0.1:1", 1),
                b("127.0.0.1:2", 0),
                b("127.0.0.1:3", 1),
                b("127.0.0.1:4", 1),
            ],
        );
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        // After 3: 4; after 4 it wraps to 1; a down backend is skipped.
        assert_eq!(another_backend(&s, &[a(3)]), Some(a(4)));
        assert_eq!(another_backend(&s, &[a(3), a(4)]), Some(a(1)));
        assert_eq!(another_backend(&s, &[a(1)]), Some(a(3)));
        // Every live one tried: none.
        assert_eq!(another_backend(&s, &[a(1), a(3), a(4)]), None);
    }
}
