//! Conntrack's new-connection events (NFNLGRP_CONNTRACK_NEW): a flow the
//! kernel confirms and then kills at once (a TCP SYN answered by a reset
//! is deleted as the reset passes) is never in a dump, but its event was
//! sent when it was confirmed, with the NAT it got.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};

use crate::conntrack::{flow, Flow};

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
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (GROUP_NEW - 1)))?;
        if setsockopt(&fd, sockopt::RcvBufForce, &(1 << 20)).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &(1 << 20));
        }
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
pub fn new_flows(mut b: &[u8]) -> Vec<Flow> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            break;
        }
        if ty == MSG_CT_NEW {
            out.extend(b.get(20..len).and_then(flow));
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}
