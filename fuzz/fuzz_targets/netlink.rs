//! What realip-nft reads from the kernel: the netlink receive-buffer walk,
//! NLMSG_ERROR replies, table-dump names, ctnetlink conntrack flows and
//! the naming of a refused batch message, nf_tables trace events, rules
//! and set elements read back, conntrack's new-flow events. Arbitrary bytes never panic or
//! read past the buffer; each walk hands out at most one message per 16
//! bytes (it always moves on); a flow that parses re-encodes to attributes
//! that parse back to the same flow.
#![no_main]
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use realip_nft::fuzz::{answer, describe, flow, flow_attrs, replies, table_names, Answer};
use realip_nft::{new_flows, parse_rule, parse_set_elements, parse_trace_event, trace_messages};

fn same_family(a: SocketAddr, b: SocketAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fuzz_target!(|data: &[u8]| {
    // The sequence number asked for is in the first message's header, so
    // the walk finds matching messages.
    let seq = data
        .get(8..12)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    for dump in [false, true] {
        let mut msgs = 0;
        let mut bytes = 0;
        let a = answer(data, seq, dump, |payload| {
            msgs += 1;
            bytes += payload.len() + 16;
            let _ = table_names(payload);
            let _ = parse_trace_event(payload);
            let _ = parse_set_elements(payload);
            if let Some(r) = parse_rule(payload) {
                // Rendering a rule read back never panics either.
                let _ = r.text(realip_nft::Family::Ipv4);
                let _ = r.text(realip_nft::Family::Ipv6);
                let _ = r.pick();
            }
            if let Some(f) = payload.get(4..).and_then(flow) {
                // Encoding a tuple takes one family for both addresses.
                if same_family(f.orig_src, f.orig_dst) && same_family(f.reply_src, f.reply_dst) {
                    assert_eq!(flow(&flow_attrs(&f)), Some(f));
                }
            }
        });
        assert!(msgs <= data.len() / 16);
        assert!(bytes <= data.len());
        if let Answer::Refused(code) = a {
            assert_ne!(code, 0);
        }
    }
    let errs = replies(data);
    assert!(errs.len() <= data.len() / 36);
    let _ = flow(data);
    let _ = table_names(data);
    assert!(trace_messages(data).len() <= data.len() / 16);
    assert!(new_flows(data).len() <= data.len() / 16);
    // A refused message is looked up at an offset the batch recorded.
    for at in [0, data.len() / 2, data.len()] {
        let _ = describe(data, at);
    }
});
