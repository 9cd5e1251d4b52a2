//! What every walk returns, and the two ways it names a client.

use crate::addr::Addr;
use crate::strategy::HeaderName;

use super::client::{ClientAddr, Source};
use super::report::Stop;

pub(super) type Outcome = (Option<ClientAddr>, Stop);

pub(super) fn peer_client(peer: &Addr) -> ClientAddr {
    ClientAddr {
        ip: peer.ip,
        port: peer.port,
        source: Source::Peer,
    }
}

#[inline]
pub(super) fn header_client(name: &HeaderName, index: usize, a: Addr) -> ClientAddr {
    ClientAddr {
        ip: a.ip,
        port: a.port,
        source: Source::Header {
            name: name.clone(),
            index,
        },
    }
}
