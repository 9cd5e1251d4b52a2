//! One nf_tables transaction as netlink bytes.

use crate::expr::{Expr, Verdict};
use crate::family::Family;
use crate::writer::Writer;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const SUBSYS_NFTABLES: u16 = 10;
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;

const MSG_NEWTABLE: u16 = 0;
const MSG_DELTABLE: u16 = 2;
const MSG_NEWCHAIN: u16 = 3;
const MSG_DELCHAIN: u16 = 5;
const MSG_NEWRULE: u16 = 6;
const MSG_DELRULE: u16 = 8;
const MSG_NEWSET: u16 = 9;
const MSG_DELSET: u16 = 11;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// NF_INET_PRE_ROUTING
    Prerouting,
    /// NF_INET_LOCAL_IN
    Input,
    /// NF_INET_FORWARD
    Forward,
    /// NF_INET_LOCAL_OUT
    Output,
    /// NF_INET_POST_ROUTING
    Postrouting,
}

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`
    Filter,
    /// `nat`
    Nat,
}

/// What a set's elements map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetData {
    /// Nothing: a set.
    None,
    /// A verdict: a verdict map (`vmap`).
    Verdict,
    /// A value of nft type `type_id`, `len` bytes: a data map.
    Value {
        /// nft's type ([`crate::datatype`]).
        type_id: u32,
        /// Bytes (concatenation fields padded to 4).
        len: u32,
    },
}

/// What one element maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemData {
    /// A verdict (verdict maps).
    Verdict(Verdict),
    /// A value (data maps).
    Value(Vec<u8>),
}

/// A set or map to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// Its name.
    pub name: String,
    /// nft's key type ([`crate::datatype`]).
    pub key_type: u32,
    /// Key length in bytes (concatenation fields padded to 4).
    pub key_len: u32,
    /// What the elements map to, if anything.
    pub data: SetData,
    /// Elements may be added from the packet path (`update @set`), and
    /// expire after this many milliseconds.
    pub dynamic_timeout_ms: Option<u64>,
    /// How many elements the set is made for: the kernel then sizes a
    /// fixed hash table once instead of growing one as elements arrive.
    /// A hint, not a limit, for the backends the kernel picks here.
    pub size: Option<u32>,
    /// NFTA_SET_USERDATA: what nft itself stores with a set (key byte
    /// order, `typeof` expressions). Only `nft list` reads it, to print the
    /// set as it was written.
    pub userdata: Option<Vec<u8>>,
}

/// One transaction: messages between a batch begin and a batch end. The
/// kernel applies all of them or none.
#[derive(Debug)]
pub struct Batch {
    w: Writer,
    seq: u32,
    first_seq: u32,
    /// Where each message starts, by sequence number: an error report
    /// describes the message from its bytes (formatting a description for
    /// every message would cost more than encoding it).
    what: Vec<usize>,
    /// Where the last real message starts.
    last_at: Option<usize>,
    /// The kernel requires a transaction-unique id on every new set.
    next_set_id: u32,
}

impl Batch {
    /// An empty transaction.
    pub fn new() -> Self {
        let mut b = Batch {
            w: Writer::default(),
            seq: 1,
            first_seq: 1,
            what: Vec::new(),
            last_at: None,
            next_set_id: 1,
        };
        let at = b.msg_raw(BATCH_BEGIN, NLM_F_REQUEST, 0, SUBSYS_NFTABLES);
        b.finish_msg(at);
        b
    }

    /// An empty transaction with room for about `bytes` of messages, so a
    /// large one is not copied as it grows.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut b = Batch::new();
        b.w.buf.reserve(bytes);
        b.what.reserve(bytes / 256);
        b
    }

    /// Messages so far, batch begin included.
    pub fn len(&self) -> usize {
        self.what.len()
    }

    /// Whether the batch holds nothing but its begin marker.
    pub fn is_empty(&self) -> bool {
        self.what.len() <= 1
    }

    /// Bytes so far.
    pub fn byte_len(&self) -> usize {
        self.w.buf.len()
    }

    fn msg_raw(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let at = self.w.buf.len();
        // nlmsghdr: len, type, flags, seq, pid
        self.w.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.w.buf.extend_from_slice(&ty.to_ne_bytes());
        self.w.buf.extend_from_slice(&flags.to_ne_bytes());
        self.w.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.w.buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version, res_id (big-endian)
        self.w.buf.push(family);
        self.w.buf.push(0);
        self.w.buf.extend_from_slice(&res_id.to_be_bytes());
        self.seq += 1;
        self.what.push(at);
        at
    }

    fn begin(&mut self, msg: u16, flags: u16, family: Family) -> usize {
        self.last_at = Some(self.w.buf.len());
        self.msg_raw(
            (SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | flags,
            family.nfproto(),
            0,
        )
    }

    fn finish_msg(&mut self, at: usize) {
        let len = (self.w.buf.len() - at) as u32;
        self.w.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Create a table if it does not exist (no error if it does).
    pub fn add_table(&mut self, family: Family, table: &str) {
        let at = self.begin(MSG_NEWTABLE, NLM_F_CREATE, family);
        self.w.str(1, table);
        self.finish_msg(at);
    }

    /// Create a table owned by the socket that commits the batch
    /// (NFT_TABLE_F_OWNER): the kernel deletes it when that socket
    /// closes, so a process that dies, even by SIGKILL, leaves nothing
    /// behind. Only that socket may change it.
    pub fn add_owned_table(&mut self, family: Family, table: &str) {
        let at = self.begin(MSG_NEWTABLE, NLM_F_CREATE, family);
        self.w.str(1, table);
        // NFTA_TABLE_FLAGS: NFT_TABLE_F_OWNER
        self.w.u32(2, 0x2);
        self.finish_msg(at);
    }

    /// Delete a table and everything in it (an error if it does not exist:
    /// add it first in the same batch).
    pub fn del_table(&mut self, family: Family, table: &str) {
        let at = self.begin(MSG_DELTABLE, 0, family);
        self.w.str(1, table);
        self.finish_msg(at);
    }

    /// Create a chain; a base chain when `hook` is given (policy accept).
    pub fn add_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        hook: Option<(Hook, ChainType, i32)>,
    ) {
        let at = self.begin(MSG_NEWCHAIN, NLM_F_CREATE, family);
        self.w.str(1, table);
        self.w.str(3, chain);
        if let Some((hook, ty, prio)) = hook {
            let h = self.w.nest(4);
            self.w.u32(
                1,
                match hook {
                    Hook::Prerouting => 0,
                    Hook::Input => 1,
                    Hook::Forward => 2,
                    Hook::Output => 3,
                    Hook::Postrouting => 4,
                },
            );
            self.w.u32(2, prio as u32);
            self.w.end(h);
            // NF_ACCEPT
            self.w.u32(5, 1);
            self.w.str(
                7,
                match ty {
                    ChainType::Filter => "filter",
                    ChainType::Nat => "nat",
                },
            );
        }
        self.finish_msg(at);
    }

    /// Delete a chain (it must hold no rules and have no jumps to it).
    pub fn del_chain(&mut self, family: Family, table: &str, chain: &str) {
        let at = self.begin(MSG_DELCHAIN, 0, family);
        self.w.str(1, table);
        self.w.str(3, chain);
        self.finish_msg(at);
    }

    /// Delete every rule of a chain.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) {
        let at = self.begin(MSG_DELRULE, 0, family);
        self.w.str(1, table);
        self.w.str(2, chain);
        self.finish_msg(at);
    }

    /// Append a rule to a chain.
    pub fn add_rule(&mut self, family: Family, table: &str, chain: &str, exprs: &[Expr]) {
        let at = self.begin(MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family);
        self.w.str(1, table);
        self.w.str(2, chain);
        let list = self.w.nest(4);
        for e in exprs {
            e.write(&mut self.w);
        }
        self.w.end(list);
        self.finish_msg(at);
    }

    /// Create a named set or map. (No anonymous sets: the kernel walks the
    /// whole transaction each time one is bound, quadratic in a large
    /// batch.)
    pub fn add_set(&mut self, family: Family, table: &str, spec: &SetSpec) {
        let at = self.begin(MSG_NEWSET, NLM_F_CREATE, family);
        self.w.str(1, table);
        self.w.str(2, &spec.name);
        let mut flags = 0u32;
        if spec.data != SetData::None {
            flags |= 0x8; // NFT_SET_MAP
        }
        if spec.dynamic_timeout_ms.is_some() {
            flags |= 0x10 | 0x20; // NFT_SET_TIMEOUT | NFT_SET_EVAL
        }
        self.w.u32(3, flags);
        self.w.u32(4, spec.key_type);
        self.w.u32(5, spec.key_len);
        match spec.data {
            SetData::None => {}
            SetData::Verdict => self.w.u32(6, 0xffff_ff00), // NFT_DATA_VERDICT
            SetData::Value { type_id, len } => {
                self.w.u32(6, type_id);
                self.w.u32(7, len);
            }
        }
        // NFTA_SET_ID: mandatory, unique within the transaction.
        self.w.u32(10, self.next_set_id);
        self.next_set_id += 1;
        if let Some(ms) = spec.dynamic_timeout_ms {
            self.w.u64(11, ms);
        }
        if let Some(n) = spec.size {
            // NFTA_SET_DESC { NFTA_SET_DESC_SIZE }
            let d = self.w.nest(9);
            self.w.u32(1, n);
            self.w.end(d);
        }
        if let Some(ud) = &spec.userdata {
            self.w.bytes(13, ud);
        }
        self.finish_msg(at);
    }

    /// Delete a set (no rule may still refer to it).
    pub fn del_set(&mut self, family: Family, table: &str, set: &str) {
        let at = self.begin(MSG_DELSET, 0, family);
        self.w.str(1, table);
        self.w.str(2, set);
        self.finish_msg(at);
    }

    /// Add elements to a set or map.
    pub fn add_elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        elements: &[(Vec<u8>, Option<ElemData>)],
    ) {
        self.elements(MSG_NEWSETELEM, NLM_F_CREATE, family, table, set, elements);
    }

    /// Delete elements (by key) from a set or map.
    pub fn del_elements(&mut self, family: Family, table: &str, set: &str, keys: &[Vec<u8>]) {
        let elements: Vec<_> = keys.iter().map(|k| (k.clone(), None)).collect();
        self.elements(MSG_DELSETELEM, 0, family, table, set, &elements);
    }

    #[allow(clippy::too_many_arguments)]
    fn elements(
        &mut self,
        msg: u16,
        flags: u16,
        family: Family,
        table: &str,
        set: &str,
        elements: &[(Vec<u8>, Option<ElemData>)],
    ) {
        if elements.is_empty() {
            return;
        }
        // The element list is one attribute, and an attribute's length is
        // 16 bits: start a new message well before 64 KiB.
        const LIST_BYTES: usize = 32 * 1024;
        let mut rest = elements;
        while !rest.is_empty() {
            let at = self.begin(msg, flags, family);
            self.w.str(1, table);
            self.w.str(2, set);
            let list = self.w.nest(3);
            let mut taken = 0;
            for (key, verdict) in rest {
                if self.w.buf.len() - list > LIST_BYTES {
                    break;
                }
                let e = self.w.nest(1);
                self.w.value(1, key);
                match verdict {
                    Some(ElemData::Verdict(v)) => {
                        let d = self.w.nest(2);
                        v.write(&mut self.w);
                        self.w.end(d);
                    }
                    Some(ElemData::Value(bytes)) => self.w.value(2, bytes),
                    None => {}
                }
                self.w.end(e);
                taken += 1;
            }
            self.w.end(list);
            self.finish_msg(at);
            rest = &rest[taken..];
        }
    }

    /// Whether an attribute outgrew its 16-bit length (a bug: the batch
    /// must not be sent).
    pub(crate) fn overflowed(&self) -> bool {
        self.w.overflow
    }

    /// Close the batch: the batch end, and an acknowledgement asked for
    /// the last real message.
    pub(crate) fn finish(mut self) -> Finished {
        // Ask for an acknowledgement of the last real message only: errors
        // are reported whether asked or not, and one ack per message would
        // be hundreds of thousands of replies for a large ruleset.
        let last = self.seq - 1;
        if let Some(at) = self.last_at {
            let flags = u16::from_ne_bytes([self.w.buf[at + 6], self.w.buf[at + 7]]) | NLM_F_ACK;
            self.w.buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        }
        let at = self.msg_raw(BATCH_END, NLM_F_REQUEST, 0, SUBSYS_NFTABLES);
        self.finish_msg(at);
        Finished {
            buf: self.w.buf,
            first_seq: self.first_seq,
            last_seq: last,
            starts: self.what,
        }
    }
}

/// A closed batch, as [`crate::Netlink::commit`] sends it.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Every message, batch begin and end included.
    pub(crate) buf: Vec<u8>,
    /// The batch begin's sequence number.
    pub(crate) first_seq: u32,
    /// The last real message's: the one acknowledged.
    pub(crate) last_seq: u32,
    /// Where each message starts in `buf`, in sequence order from
    /// `first_seq`: what an error report describes.
    pub(crate) starts: Vec<usize>,
}

/// What the message at `at` of a batch does, in nft's words: "add rule
/// realip services".
pub(crate) fn describe(buf: &[u8], at: usize) -> String {
    let Some(h) = buf.get(at..at + 20) else {
        return format!("message at byte {at}");
    };
    let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let ty = u16::from_ne_bytes([h[4], h[5]]);
    let verb = match ty & 0xff {
        _ if ty >> 8 != SUBSYS_NFTABLES => return "the batch".into(),
        MSG_NEWTABLE => "add table",
        MSG_DELTABLE => "delete table",
        MSG_NEWCHAIN => "add chain",
        MSG_DELCHAIN => "delete chain",
        MSG_NEWRULE => "add rule",
        MSG_DELRULE => "flush chain",
        MSG_NEWSET => "add set",
        MSG_DELSET => "delete set",
        MSG_NEWSETELEM => "add elements to",
        MSG_DELSETELEM => "delete elements from",
        _ => "message",
    };
    // The table (attribute 1) and the chain or set name: attribute 3 for
    // chain messages, 2 for the rest.
    let name_attr = if matches!(ty & 0xff, MSG_NEWCHAIN | MSG_DELCHAIN) {
        3
    } else {
        2
    };
    let mut names = Vec::new();
    let mut a = buf.get(at + 20..at + len.max(20)).unwrap_or(&[]);
    while a.len() >= 4 {
        let l = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let t = u16::from_ne_bytes([a[2], a[3]]);
        if l < 4 || l > a.len() {
            break;
        }
        if t == 1 || t == name_attr {
            if let Ok(s) = std::str::from_utf8(&a[4..l]) {
                names.push(s.trim_end_matches('\0').to_string());
            }
        }
        a = &a[((l + 3) & !3).min(a.len())..];
    }
    format!("{verb} {}", names.join(" "))
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_and_the_last_one_asks_for_an_ack() {
        let mut b = Batch::new();
        b.add_table(Family::Ipv4, "t");
        b.add_chain(Family::Ipv4, "t", "c", None);
        b.add_rule(Family::Ipv4, "t", "c", &[Expr::Verdict(Verdict::Accept)]);
        let Finished {
            buf,
            first_seq: first,
            last_seq: last,
            starts: what,
        } = b.finish();
        assert_eq!((first, last), (1, 4));
        assert_eq!(what.len(), 5);
        // Walk the messages: lengths add up, sequence numbers count up.
        let mut off = 0;
        let mut seqs = Vec::new();
        let mut acks = Vec::new();
        while off < buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            assert!(len >= 20 && len & 3 == 0, "length {len}");
            let flags = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]);
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
            seqs.push(seq);
            if flags & NLM_F_ACK != 0 {
                acks.push(seq);
            }
            off += len;
        }
        assert_eq!(off, buf.len());
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(acks, [4]);
    }

    #[test]
    fn cidr_matches_load_whole_bytes_or_mask() {
        let e = Expr::network_prefix(12, &[10, 244, 1, 0], 24, crate::CmpOp::Neq);
        assert_eq!(e.len(), 2);
        assert!(matches!(&e[1], Expr::Cmp { data, .. } if data == &[10, 244, 1]));
        let e = Expr::network_prefix(12, &[10, 64, 0, 0], 10, crate::CmpOp::Eq);
        assert!(matches!(&e[1], Expr::Bitwise { mask, .. } if mask == &[0xff, 0xc0, 0, 0]));
        assert!(matches!(&e[2], Expr::Cmp { data, .. } if data == &[10, 64, 0, 0]));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn long_element_lists_are_split_below_the_attribute_limit() {
        let mut b = Batch::new();
        let elements: Vec<_> = (0..20_000u32)
            .map(|i| {
                (
                    i.to_be_bytes().repeat(3),
                    Some(ElemData::Verdict(Verdict::Goto(format!(
                        "service-{i:08}-some-long-name"
                    )))),
                )
            })
            .collect();
        b.add_elements(Family::Ipv4, "t", "m", &elements);
        assert!(!b.overflowed());
        assert!(b.len() > 10, "{} messages", b.len());
        // Every element made it into some message.
        let buf = b.finish().buf;
        let needle = b"service-00019999-some-long-name";
        assert!(buf.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn refused_messages_are_described_by_their_names() {
        let mut b = Batch::new();
        b.add_chain(Family::Ipv4, "t", "c", None);
        b.add_set(
            Family::Ipv4,
            "t",
            &SetSpec {
                name: "s".into(),
                key_type: 7,
                key_len: 4,
                data: SetData::None,
                dynamic_timeout_ms: None,
                size: None,
                userdata: None,
            },
        );
        b.add_rule(Family::Ipv4, "t", "c", &[]);
        let Finished {
            buf, starts: what, ..
        } = b.finish();
        let d: Vec<String> = what[1..4].iter().map(|&at| describe(&buf, at)).collect();
        assert_eq!(d, ["add chain t c", "add set t s", "add rule t c"]);
    }
}
