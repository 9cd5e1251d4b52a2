//! Source hash (ULB's `vserver-method: source`): a hash of the client's
//! IP, so the same client gets the same backend.

use std::net::SocketAddr;

use super::hash::hash_ip;
use super::select::{Backend, Select};

/// Each backend's slots, in proportion to its weight.
#[derive(Debug)]
pub(crate) struct SourceHash {
    slots: Vec<u32>,
}

impl SourceHash {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        SourceHash {
            slots: weighted_slots(backends),
        }
    }
}

impl Select for SourceHash {
    fn pick(&self, _: &[Backend], client: SocketAddr, _: SocketAddr) -> usize {
        let h = hash_ip(client.ip());
        self.slots[(h % self.slots.len() as u64) as usize] as usize
    }
}

/// For source hash: each backend holds slots in proportion to its weight
/// (at most 64Ki slots in all).
fn weighted_slots(backends: &[Backend]) -> Vec<u32> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    let scale = if total > 65_536 {
        total / 65_536 + 1
    } else {
        1
    };
    let mut slots = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let n = (u64::from(b.weight) / scale).max(1);
        slots.extend(std::iter::repeat_n(i as u32, n as usize));
    }
    slots
}

#[cfg(test)]
mod tests {
    use crate::schedule::tests::{backends, client, lb};
    use crate::schedule::{Method, Schedule};

    #[test]
    fn source_hash_keeps_a_client_and_spreads_clients() {
        let s = Schedule::new(Method::SourceHash, backends(4));
        let mut count = [0usize; 4];
        for i in 0..4000 {
            let c = client(i);
            let a = s.pick(c, lb()).unwrap().index();
            // Another port of the same client: the same backend.
            let other = std::net::SocketAddr::new(c.ip(), c.port().wrapping_add(1));
            assert_eq!(a, s.pick(other, lb()).unwrap().index());
            count[a] += 1;
        }
        assert!(count.iter().all(|&c| (800..1200).contains(&c)), "{count:?}");
    }
}
