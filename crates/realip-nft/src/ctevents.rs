//! Conntrack's new-connection events (NFNLGRP_CONNTRACK_NEW): a flow the
//! kernel confirms and then kills at once (a TCP SYN answered by a reset
//! is deleted as the reset passes) is never in a dump, but its event was
//! sent when it was confirmed, with the NAT it got.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

use crate::conntrack::{flow, Flow};
use crate::socket::{messages, netfilter_socket};

/// NFNLGRP_CONNTRACK_NEW.
const GROUP_NEW: u32 = 1;
/// IPCTNL_MSG_CT_NEW in the ctnetlink subsystem (1).
const MSG_CT_NEW: u16 = 1 << 8;

/// A socket on conntrack's new-flow group in the current namespace.
#[derive(Debug)]
pub struct ConntrackEvents {
    fd: OwnedFd,
}

impl ConntrackEvents {
    /// Join the group (needs CAP_NET_ADMIN); flows confirmed from now on
    /// are reported.
    pub fn open() -> io::Result<Self> {
        let fd = netfilter_socket(1 << (GROUP_NEW - 1), 1 << 20)?;
        Ok(ConntrackEvents { fd })
    }

    /// The flows reported so far (without waiting).
    pub fn drain(&self) -> io::Result<Vec<Flow>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => out.extend(new_flows(&buf[..n])),
                Err(Errno::EAGAIN) => return Ok(out),
                Err(Errno::EINTR) => {}
                // Overflow: what was lost was not ours to wait for; go on.
                Err(Errno::ENOBUFS) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The flows of the IPCTNL_MSG_CT_NEW messages in one receive buffer.
pub fn new_flows(b: &[u8]) -> Vec<Flow> {
    messages(b)
        .filter(|(ty, _)| *ty == MSG_CT_NEW)
        .filter_map(|(_, m)| m.get(20..).and_then(flow))
        .collect()
}
