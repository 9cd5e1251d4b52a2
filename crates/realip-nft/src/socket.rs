//! The netlink socket that commits batches.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use crate::batch::{describe, Batch, Finished};
use crate::family::Family;

/// Why a commit failed. Nothing of the batch took effect in any case but
/// [`CommitError::NoAnswer`], where the kernel's state is unknown.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The netlink socket could not be opened or used (no CAP_NET_ADMIN,
    /// no nf_tables in this kernel, ...).
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a message; the whole batch was rolled back.
    #[error("the kernel refused `{what}`: {error} (nothing was changed)")]
    Rejected {
        /// The message, as [`Batch`] described it.
        what: String,
        /// The kernel's error.
        #[source]
        error: io::Error,
        /// How many other messages were refused too.
        others: usize,
    },
    /// No acknowledgement arrived in time.
    #[error("no answer from the kernel within {0:?}")]
    NoAnswer(std::time::Duration),
}

/// How long to wait for the kernel's answer. The kernel processes a batch
/// within the send call; this only bounds a kernel that misbehaves.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A NETLINK_NETFILTER socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    /// Sequence numbers for single requests (batches number their own).
    seq: u32,
}

impl Netlink {
    /// Open a socket in the current network namespace.
    pub fn open() -> Result<Self, CommitError> {
        let err = |e: Errno| CommitError::Socket(io::Error::from(e));
        // Room for many error replies.
        let fd = netfilter_socket(0, 4 << 20).map_err(err)?;
        let t = ANSWER_TIMEOUT.as_secs() as i64;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(t, 0)).map_err(err)?;
        Ok(Netlink { fd, seq: 1 << 30 })
    }

    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send one request and read its answer: for a dump, every message
    /// until NLMSG_DONE goes to `on_msg` (the bytes after the netlink
    /// header); otherwise the acknowledgement ends it.
    pub(crate) fn exchange(
        &mut self,
        req: &[u8],
        seq: u32,
        dump: bool,
        mut on_msg: impl FnMut(&[u8]),
    ) -> Result<(), CommitError> {
        let err = |e: Errno| CommitError::Socket(io::Error::from(e));
        sendto(
            self.fd.as_raw_fd(),
            req,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(err)?;
        let mut rbuf = vec![0u8; 256 * 1024];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut rbuf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Err(CommitError::NoAnswer(ANSWER_TIMEOUT)),
                Err(e) => return Err(err(e)),
            };
            match answer(&rbuf[..n], seq, dump, &mut on_msg) {
                Answer::More => {}
                Answer::Done => return Ok(()),
                Answer::Refused(code) => {
                    return Err(CommitError::Rejected {
                        what: format!("netlink request {seq}"),
                        error: io::Error::from_raw_os_error(-code),
                        others: 0,
                    })
                }
            }
        }
    }

    /// The names of a family's nf_tables tables in this namespace.
    pub fn tables(&mut self, family: Family) -> Result<Vec<String>, CommitError> {
        let seq = self.next_seq();
        let mut req = Vec::with_capacity(20);
        req.extend_from_slice(&20u32.to_ne_bytes());
        // NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_DUMP
        req.extend_from_slice(&((10u16 << 8) | 1).to_ne_bytes());
        req.extend_from_slice(&(0x1u16 | 0x300).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[family.nfproto(), 0, 0, 0]);
        let mut names = Vec::new();
        self.exchange(&req, seq, true, |payload| {
            names.extend(table_names(payload));
        })?;
        Ok(names)
    }

    /// Send one transaction and wait for the kernel's verdict.
    pub fn commit(&mut self, batch: Batch) -> Result<(), CommitError> {
        if batch.overflowed() {
            return Err(CommitError::Socket(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a netlink attribute is longer than 64 KiB; nothing was sent",
            )));
        }
        let Finished {
            buf,
            first_seq,
            last_seq,
            starts: what,
        } = batch.finish();
        let err = |e: Errno| CommitError::Socket(io::Error::from(e));
        // The kernel takes a batch only whole, in one message buffer: make
        // the send buffer big enough for it.
        let want = buf.len().saturating_add(64 * 1024);
        if setsockopt(&self.fd, sockopt::SndBufForce, &want).is_err() {
            let _ = setsockopt(&self.fd, sockopt::SndBuf, &want);
        }
        let sent = sendto(
            self.fd.as_raw_fd(),
            &buf,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(err)?;
        if sent != buf.len() {
            return Err(CommitError::Socket(io::Error::other(format!(
                "sent {sent} of {} bytes",
                buf.len()
            ))));
        }
        let mut acked = false;
        let mut errors: Vec<(u32, i32)> = Vec::new();
        let mut rbuf = vec![0u8; 64 * 1024];
        loop {
            // Replies are queued while the kernel handles the send, so
            // they are normally all there; wait (bounded) only if not.
            let flags = if acked || !errors.is_empty() {
                MsgFlags::MSG_DONTWAIT
            } else {
                MsgFlags::empty()
            };
            let n = match recv(self.fd.as_raw_fd(), &mut rbuf, flags) {
                Ok(n) => n,
                Err(Errno::EAGAIN) if acked || !errors.is_empty() => break,
                Err(Errno::EAGAIN) => return Err(CommitError::NoAnswer(ANSWER_TIMEOUT)),
                Err(e) => return Err(err(e)),
            };
            for (seq, code) in replies(&rbuf[..n]) {
                if code != 0 {
                    errors.push((seq, code));
                }
                if seq == last_seq {
                    acked = true;
                }
            }
        }
        match errors.first() {
            None => Ok(()),
            Some(&(seq, code)) => {
                let what = match seq
                    .checked_sub(first_seq)
                    .and_then(|i| what.get(i as usize))
                {
                    _ if seq == first_seq => "the commit of the batch".to_string(),
                    Some(&at) => describe(&buf, at),
                    None => format!("message {seq}"),
                };
                Err(CommitError::Rejected {
                    what,
                    error: io::Error::from_raw_os_error(-code),
                    others: errors.len() - 1,
                })
            }
        }
    }
}

/// What one receive buffer says about the request numbered `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not finished: read again.
    More,
    /// NLMSG_DONE, or the acknowledgement of a request that is no dump.
    Done,
    /// NLMSG_ERROR with this (negative errno) code.
    Refused(i32),
}

/// Walk the messages of one receive buffer: each message of request `seq`
/// that is neither DONE nor ERROR goes to `on_msg` (the bytes after the
/// netlink header). A length that does not fit the buffer ends the walk
/// instead of reading past it.
pub(crate) fn answer(b: &[u8], seq: u32, dump: bool, mut on_msg: impl FnMut(&[u8])) -> Answer {
    for (ty, m) in messages(b) {
        if u32::from_ne_bytes([m[8], m[9], m[10], m[11]]) != seq {
            continue;
        }
        match ty {
            // NLMSG_DONE
            3 => return Answer::Done,
            // NLMSG_ERROR: 0 is the acknowledgement.
            2 if m.len() >= 20 => {
                let code = i32::from_ne_bytes([m[16], m[17], m[18], m[19]]);
                if code != 0 {
                    return Answer::Refused(code);
                }
                if !dump {
                    return Answer::Done;
                }
            }
            _ => on_msg(&m[16..]),
        }
    }
    Answer::More
}

/// The netlink messages of one receive buffer, each as (type, the whole
/// message, its 16-byte header included). A length that does not fit the
/// buffer ends the walk instead of reading past it.
pub(crate) fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            return None;
        }
        let m = &b[..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, m))
    })
}

/// A NETLINK_NETFILTER socket in the current namespace, joined to the
/// multicast `groups` (a bit mask; 0 for requests only), with a receive
/// buffer of `rcvbuf` bytes (forced past the sysctl limit when allowed).
pub(crate) fn netfilter_socket(groups: u32, rcvbuf: usize) -> Result<OwnedFd, Errno> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    // FORCE needs CAP_NET_ADMIN, which everything here needs anyway.
    if setsockopt(&fd, sockopt::RcvBufForce, &rcvbuf).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &rcvbuf);
    }
    Ok(fd)
}

/// The table names (NFTA_TABLE_NAME, attribute 1) of one NFT_MSG_NEWTABLE
/// dump message (the bytes after the netlink header).
pub(crate) fn table_names(payload: &[u8]) -> Vec<String> {
    // nfgenmsg, then attributes.
    crate::dump::attrs(payload.get(4..).unwrap_or(&[]))
        .filter(|(t, _)| *t == 1)
        .map(|(_, v)| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        })
        .collect()
}

/// (sequence number, error code) of each NLMSG_ERROR in a receive buffer;
/// code 0 is an acknowledgement.
pub(crate) fn replies(b: &[u8]) -> Vec<(u32, i32)> {
    // NLMSG_ERROR: int error, then the request's header (seq at +8).
    messages(b)
        .filter(|(ty, m)| *ty == 2 && m.len() >= 16 + 4 + 16)
        .map(|(_, m)| {
            let code = i32::from_ne_bytes([m[16], m[17], m[18], m[19]]);
            let seq = u32::from_ne_bytes([m[28], m[29], m[30], m[31]]);
            (seq, code)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_are_read_and_bounded() {
        let mut msg = Vec::new();
        msg.extend_from_slice(&36u32.to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&(-17i32).to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&[0; 4]);
        assert_eq!(replies(&msg), [(7, -17)]);
        // Truncated or nonsense lengths stop the walk instead of panicking.
        assert!(replies(&msg[..20]).is_empty());
        let mut bad = msg.clone();
        bad[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(replies(&bad).is_empty());
    }
}
