//! The parsers of what the kernel sends back, for the fuzz targets in
//! `fuzz/` only: not an API.

use std::net::SocketAddr;

use crate::conntrack::Flow;
pub use crate::socket::Answer;
use crate::writer::Writer;

/// Walk one receive buffer for request `seq`; `on_msg` gets each
/// message's payload.
pub fn answer(b: &[u8], seq: u32, dump: bool, on_msg: impl FnMut(&[u8])) -> Answer {
    crate::socket::answer(b, seq, dump, on_msg)
}

/// (sequence number, error code) of each NLMSG_ERROR in a buffer.
pub fn replies(b: &[u8]) -> Vec<(u32, i32)> {
    crate::socket::replies(b)
}

/// The table names of one table dump message.
pub fn table_names(payload: &[u8]) -> Vec<String> {
    crate::socket::table_names(payload)
}

/// A conntrack flow from one ctnetlink message's attributes.
pub fn flow(attrs: &[u8]) -> Option<Flow> {
    crate::conntrack::flow(attrs)
}

/// A flow's attributes as `conntrack_delete` writes its tuple, plus the
/// reply tuple and the zone: what a dump message carries.
pub fn flow_attrs(f: &Flow) -> Vec<u8> {
    let mut w = Writer::default();
    let tuple = |w: &mut Writer, ty, src: SocketAddr, dst| {
        crate::conntrack::write_tuple(w, ty, f.proto, src, dst)
    };
    tuple(&mut w, 1, f.orig_src, f.orig_dst);
    tuple(&mut w, 2, f.reply_src, f.reply_dst);
    if f.zone != 0 {
        w.bytes(18, &f.zone.to_be_bytes());
    }
    w.buf
}

/// How a refused message of a batch is named, from its bytes at `at`.
pub fn describe(buf: &[u8], at: usize) -> String {
    crate::batch::describe(buf, at)
}
