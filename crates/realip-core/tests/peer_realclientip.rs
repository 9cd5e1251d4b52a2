//! realip-core against a peer implementation: the strategy test tables of
//! realclientip-go (github.com/realclientip/realclientip-go,
//! `realclientip_test.go` at 0718295), transcribed as facts (headers, peer,
//! strategy, answer) and run through our resolver.
//!
//! Every case records both answers. Where they differ, `why` names the
//! difference and its reason, and the runner insists that a case with no
//! `why` gives exactly Go's answer, and one with a `why` does not, so the
//! notes cannot go stale.
//!
//! Two differences of setup run through whole groups and are not repeated
//! per case:
//! - Go's header strategies never look at the peer; ours read a header only
//!   from a trusted peer (single-header, rightmost-trusted-range) or a
//!   non-public one (the `*-non-private` strategies). Where Go's case leaves
//!   the peer empty we give one that lets the header be read (10.0.0.5, in
//!   10.0.0.0/8, or an address inside the case's trusted ranges), so the
//!   case still tests what Go's tests.
//! - Go's RemoteAddr is a string; ours is a socket address. Go's cases with
//!   an empty, garbage or Unix-socket (`@`) RemoteAddr have no counterpart
//!   and are left out (named where they would be); zones on a socket are
//!   numeric scope ids (`%2` for Go's `%eth0`).
//!
//! Answers are compared as the IP only, as Go returns them (without port).
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::net::SocketAddr;

use realip_core::{Request, Resolver, Strategy, TrustSet};

struct Case {
    /// Go's case name.
    name: &'static str,
    /// Our strategy chain ("" for an empty chain).
    strategy: &'static str,
    trusted: &'static [&'static str],
    peer: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// What realclientip-go answers ("" is None).
    go: Option<&'static str>,
    /// What we answer.
    ours: Option<&'static str>,
    /// Empty when we agree; otherwise the deliberate difference and why.
    why: &'static str,
}

/// A private peer and the range that trusts it: what Go's empty RemoteAddr
/// becomes for the header strategies.
const P: &str = "10.0.0.5:555";
const TEN: &[&str] = &["10.0.0.0/8"];
const NONE: &[&str] = &[];

// The reasons, named once.
const ZONE: &str = "our answer carries no zone: a zone is an interface on the machine that \
                    wrote it (RFC 4007 section 6, RFC 6874), meaningless here; the hop's zone \
                    is still shown in explanations";
const BROKEN_STOPS: &str = "a broken entry stops a rightmost walk: it was written by a hop we \
                            cannot place, so nothing left of it can be vouched for (Go skips it)";
const NGINX_ALL_TRUSTED: &str = "nginx realip (real_ip_recursive on): every entry trusted leaves \
                                 the leftmost; Go has no answer";
const NGINX_BROKEN: &str = "nginx realip: an entry that does not parse stops the walk and the \
                            last address walked is the answer (flagged); Go has no answer";
const NGINX_NO_HEADER: &str = "nginx realip: a trusted peer with no header is the client; Go \
                               has no answer";
const ENVOY_TOO_FEW: &str = "Envoy xff_num_trusted_hops: fewer entries than the count falls \
                             back to the connection's peer; Go has no answer";
// TestRemoteAddrStrategy.
const REMOTE_ADDR: &[Case] = &[
    Case {
        name: "IPv4 with port",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "2.2.2.2:1234",
        headers: &[],
        go: Some("2.2.2.2"),
        ours: Some("2.2.2.2"),
        why: "",
    },
    Case {
        name: "IPv4 with no port",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "2.2.2.2",
        headers: &[],
        go: Some("2.2.2.2"),
        ours: Some("2.2.2.2"),
        why: "",
    },
    Case {
        name: "IPv6 with port",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "[2607:f8b0:4004:83f::18]:3838",
        headers: &[],
        go: Some("2607:f8b0:4004:83f::18"),
        ours: Some("2607:f8b0:4004:83f::18"),
        why: "",
    },
    Case {
        name: "IPv6 with no port",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "2607:f8b0:4004:83f::18",
        headers: &[],
        go: Some("2607:f8b0:4004:83f::18"),
        ours: Some("2607:f8b0:4004:83f::18"),
        why: "",
    },
    Case {
        name: "IPv6 with zone and no port",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "[fe80::1111%2]:0",
        headers: &[],
        go: Some("fe80::1111%eth0"),
        ours: Some("fe80::1111"),
        why: ZONE,
    },
    Case {
        name: "IPv6 with zone and port",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "[fe80::2222%2]:4848",
        headers: &[],
        go: Some("fe80::2222%eth0"),
        ours: Some("fe80::2222"),
        why: ZONE,
    },
    Case {
        name: "IPv4-mapped IPv6",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "[::ffff:172.21.0.6]:4747",
        headers: &[],
        go: Some("172.21.0.6"),
        ours: Some("172.21.0.6"),
        why: "",
    },
    Case {
        name: "IPv4-mapped IPv6 in IPv6 form",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "0:0:0:0:0:ffff:bc15:0006",
        headers: &[],
        go: Some("188.21.0.6"),
        ours: Some("188.21.0.6"),
        why: "",
    },
    Case {
        name: "NAT64 IPv4-mapped IPv6",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "[64:ff9b::188.0.2.128]:4747",
        headers: &[],
        go: Some("64:ff9b::bc00:280"),
        ours: Some("64:ff9b::bc00:280"),
        why: "",
    },
    Case {
        name: "6to4 IPv4-mapped IPv6",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "[2002:c000:204::]:4747",
        headers: &[],
        go: Some("2002:c000:204::"),
        ours: Some("2002:c000:204::"),
        why: "",
    },
    Case {
        name: "IPv4 loopback",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "127.0.0.1",
        headers: &[],
        go: Some("127.0.0.1"),
        ours: Some("127.0.0.1"),
        why: "",
    },
    Case {
        name: "IPv6 loopback",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "::1",
        headers: &[],
        go: Some("::1"),
        ours: Some("::1"),
        why: "",
    },
    Case {
        name: "Garbage header (unused)",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "2.2.2.2:1234",
        headers: &[("X-Forwarded-For", "!!!")],
        go: Some("2.2.2.2"),
        ours: Some("2.2.2.2"),
        why: "",
    },
    // "Fail: empty RemoteAddr", "Fail: garbage RemoteAddr", "Fail: Unix
    // domain socket": no socket address has those forms.
    Case {
        name: "Fail: zero RemoteAddr IP",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "0.0.0.0",
        headers: &[],
        go: None,
        ours: None,
        why: "",
    },
    Case {
        name: "Fail: unspecified RemoteAddr IP",
        strategy: "remote-addr",
        trusted: NONE,
        peer: "::",
        headers: &[],
        go: None,
        ours: None,
        why: "",
    },
];

// TestSingleIPHeaderStrategy. The peer is trusted (see the module notes).
const SINGLE_HEADER: &[Case] = &[
    Case {
        name: "IPv4 with port",
        strategy: "single-header:True-Client-IP",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "1.1.1.1"),
            ("True-Client-Ip", "2.2.2.2:49489"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("2.2.2.2"),
        ours: Some("2.2.2.2"),
        why: "",
    },
    Case {
        name: "IPv4 with no port",
        strategy: "single-header:X-Real-IP",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "1.1.1.1"),
            ("True-Client-Ip", "2.2.2.2:49489"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("1.1.1.1"),
        ours: Some("1.1.1.1"),
        why: "",
    },
    Case {
        name: "IPv6 with port",
        strategy: "single-header:X-Real-IP",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "[2607:f8b0:4004:83f::18]:3838"),
            ("True-Client-Ip", "2.2.2.2:49489"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("2607:f8b0:4004:83f::18"),
        ours: Some("2607:f8b0:4004:83f::18"),
        why: "",
    },
    Case {
        name: "IPv6 with no port",
        strategy: "single-header:X-Real-IP",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "2607:f8b0:4004:83f::19"),
            ("True-Client-Ip", "2.2.2.2:49489"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("2607:f8b0:4004:83f::19"),
        ours: Some("2607:f8b0:4004:83f::19"),
        why: "",
    },
    Case {
        name: "IPv6 with zone and no port",
        strategy: "single-header:a-b-c-d",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "2607:f8b0:4004:83f::19"),
            ("A-B-C-D", "fe80::1111%zone"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("fe80::1111%zone"),
        ours: Some("fe80::1111"),
        why: ZONE,
    },
    Case {
        name: "IPv6 with zone and port",
        strategy: "single-header:a-b-c-d",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "2607:f8b0:4004:83f::19"),
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("fe80::1111%zone"),
        ours: Some("fe80::1111"),
        why: ZONE,
    },
    Case {
        name: "IPv6 with brackets but no port",
        strategy: "single-header:x-real-ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "2607:f8b0:4004:83f::19"),
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("2607:f8b0:4004:83f::19"),
        ours: Some("2607:f8b0:4004:83f::19"),
        why: "",
    },
    Case {
        name: "IP-mapped IPv6",
        strategy: "single-header:x-real-ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "::ffff:172.21.0.6"),
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("172.21.0.6"),
        ours: Some("172.21.0.6"),
        why: "",
    },
    Case {
        name: "IPv4-mapped IPv6 in IPv6 form",
        strategy: "single-header:x-real-ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "[64:ff9b::188.0.2.128]:4747"),
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("64:ff9b::bc00:280"),
        ours: Some("64:ff9b::bc00:280"),
        why: "",
    },
    Case {
        name: "6to4 IPv4-mapped IPv6",
        strategy: "single-header:x-real-ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "2002:c000:204::"),
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("2002:c000:204::"),
        ours: Some("2002:c000:204::"),
        why: "",
    },
    Case {
        name: "IPv4 loopback",
        strategy: "single-header:x-real-ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "127.0.0.1"),
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: Some("127.0.0.1"),
        ours: Some("127.0.0.1"),
        why: "",
    },
    Case {
        name: "Fail: missing header",
        strategy: "single-header:x-real-ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("A-B-C-D", "[fe80::1111%zone]:4848"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: None,
        ours: None,
        why: "",
    },
    Case {
        name: "Fail: garbage IP",
        strategy: "single-header:True-Client-Ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "::1"),
            ("True-Client-Ip", "nope"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: None,
        ours: None,
        why: "",
    },
    Case {
        name: "Fail: zero IP",
        strategy: "single-header:True-Client-Ip",
        trusted: TEN,
        peer: P,
        headers: &[
            ("X-Real-Ip", "::1"),
            ("True-Client-Ip", "0.0.0.0"),
            ("X-Forwarded-For", "3.3.3.3"),
        ],
        go: None,
        ours: None,
        why: "",
    },
];

// TestLeftmostNonPrivateStrategy. The peer is private (see the module notes).
const LEFTMOST: &[Case] = &[
    Case { name: "IPv4 with port", strategy: "leftmost-non-private:X-Forwarded-For", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4")], go: Some("2.2.2.2"), ours: Some("2.2.2.2"), why: "" },
    Case { name: "IPv4 with no port", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=5.5.5.5"), ("Forwarded", "For=6.6.6.6")], go: Some("5.5.5.5"), ours: Some("5.5.5.5"), why: "" },
    Case { name: "IPv6 with port", strategy: "leftmost-non-private:X-Forwarded-For", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "[2607:f8b0:4004:83f::18]:3838, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4")], go: Some("2607:f8b0:4004:83f::18"), ours: Some("2607:f8b0:4004:83f::18"), why: "" },
    Case { name: "IPv6 with no port", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "Host=blah;For=\"2607:f8b0:4004:83f::18\";Proto=https")], go: Some("2607:f8b0:4004:83f::18"), ours: Some("2607:f8b0:4004:83f::18"), why: "" },
    Case { name: "IPv6 with port and zone", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=[fe80::1111%zone], Host=blah;For=\"[2607:f8b0:4004:83f::18%zone]:9943\";Proto=https"), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("2607:f8b0:4004:83f::18%zone"), ours: Some("2607:f8b0:4004:83f::18"), why: ZONE },
    Case { name: "IPv6 with port and zone, no quotes", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=[fe80::1111%zone], Host=blah;For=[2607:f8b0:4004:83f::18%zone]:9943;Proto=https"), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("2607:f8b0:4004:83f::18%zone"), ours: Some("2607:f8b0:4004:83f::18"), why: ZONE },
    Case { name: "IPv4-mapped IPv6", strategy: "leftmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::ffff:188.0.2.128, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "Host=blah;For=\"7.7.7.7\";Proto=https"), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("188.0.2.128"), ours: Some("188.0.2.128"), why: "" },
    Case { name: "IPv4-mapped IPv6 with port", strategy: "leftmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "[::ffff:188.0.2.128]:48483, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "Host=blah;For=\"7.7.7.7\";Proto=https"), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("188.0.2.128"), ours: Some("188.0.2.128"), why: "" },
    Case { name: "IPv4-mapped IPv6 in IPv6 (hex) form", strategy: "leftmost-non-private:forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "[::ffff:188.0.2.128]:48483, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=\"::ffff:bc15:0006\""), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("188.21.0.6"), ours: Some("188.21.0.6"), why: "" },
    Case { name: "NAT64 IPv4-mapped IPv6", strategy: "leftmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "64:ff9b::188.0.2.128, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=\"::ffff:bc15:0006\""), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("64:ff9b::bc00:280"), ours: Some("64:ff9b::bc00:280"), why: "" },
    Case { name: "XFF: leftmost not desirable", strategy: "leftmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope"), ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"), ("Forwarded", "For=\"::ffff:bc15:0006\""), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("4.4.4.4"), ours: Some("4.4.4.4"), why: "" },
    Case { name: "Forwarded: leftmost not desirable", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope"), ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"2607:f8b0:4004:83f::18\"")], go: Some("2607:f8b0:4004:83f::18"), ours: Some("2607:f8b0:4004:83f::18"), why: "" },
    Case { name: "Fail: XFF: none acceptable", strategy: "leftmost-non-private:X-Forwarded-For", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope, ::, 0.0.0.0"), ("X-Forwarded-For", "192.168.1.1, !?!"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"fe80::abcd%zone\"")], go: None, ours: None, why: "" },
    // The zoned mapped address here is 172.21.0.6, private: issue 10's zone case.
    Case { name: "Fail: Forwarded: none acceptable", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope"), ("X-Forwarded-For", "192.168.1.1, 2.2.2.2"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"::ffff:ac15:0006%zone\",For=\"::\",For=0.0.0.0")], go: None, ours: None, why: "" },
    Case { name: "Fail: XFF: no header", strategy: "leftmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"::ffff:ac15:0006%zone\"")], go: None, ours: None, why: "" },
    Case { name: "Fail: Forwarded: no header", strategy: "leftmost-non-private:forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "64:ff9b::188.0.2.128, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4")], go: None, ours: None, why: "" },
];

// TestRightmostNonPrivateStrategy. The peer is private (see the module notes).
const RIGHTMOST_NON_PRIVATE: &[Case] = &[
    Case { name: "IPv4 with port", strategy: "rightmost-non-private:X-Forwarded-For", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4:39333")], go: Some("4.4.4.4"), ours: Some("4.4.4.4"), why: "" },
    Case { name: "IPv4 with no port", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=5.5.5.5"), ("Forwarded", "For=6.6.6.6")], go: Some("6.6.6.6"), ours: Some("6.6.6.6"), why: "" },
    Case { name: "IPv6 with port", strategy: "rightmost-non-private:X-Forwarded-For", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "[2607:f8b0:4004:83f::18]:3838")], go: Some("2607:f8b0:4004:83f::18"), ours: Some("2607:f8b0:4004:83f::18"), why: "" },
    Case { name: "IPv6 with no port", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "host=what;for=6.6.6.6;proto=https"), ("Forwarded", "Host=blah;For=\"2607:f8b0:4004:83f::18\";Proto=https")], go: Some("2607:f8b0:4004:83f::18"), ours: Some("2607:f8b0:4004:83f::18"), why: "" },
    Case { name: "IPv6 with port and zone", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "host=what;for=6.6.6.6;proto=https"), ("Forwarded", "For=\"[2607:f8b0:4004:83f::18%eth0]:3393\";Proto=https"), ("Forwarded", "Host=blah;For=\"[fe80::1111%zone]:9943\";Proto=https")], go: Some("2607:f8b0:4004:83f::18%eth0"), ours: Some("2607:f8b0:4004:83f::18"), why: ZONE },
    Case { name: "IPv6 with port and zone, no quotes", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "host=what;for=6.6.6.6;proto=https"), ("Forwarded", "For=\"[2607:f8b0:4004:83f::18%eth0]:3393\";Proto=https"), ("Forwarded", "Host=blah;For=[fe80::1111%zone]:9943;Proto=https")], go: Some("2607:f8b0:4004:83f::18%eth0"), ours: Some("2607:f8b0:4004:83f::18"), why: ZONE },
    Case { name: "IPv4-mapped IPv6", strategy: "rightmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "3.3.3.3"), ("X-Forwarded-For", "4.4.4.4, ::ffff:188.0.2.128"), ("Forwarded", "Host=blah;For=\"7.7.7.7\";Proto=https"), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("188.0.2.128"), ours: Some("188.0.2.128"), why: "" },
    Case { name: "IPv4-mapped IPv6 with port", strategy: "rightmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "3.3.3.3"), ("X-Forwarded-For", "4.4.4.4,[::ffff:188.0.2.128]:48483"), ("Forwarded", "Host=blah;For=\"7.7.7.7\";Proto=https"), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("188.0.2.128"), ours: Some("188.0.2.128"), why: "" },
    Case { name: "IPv4-mapped IPv6 in IPv6 (hex) form", strategy: "rightmost-non-private:forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "[::ffff:188.0.2.128]:48483, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "host=what;for=6.6.6.6;proto=https"), ("Forwarded", "For=\"::ffff:bc15:0006\"")], go: Some("188.21.0.6"), ours: Some("188.21.0.6"), why: "" },
    Case { name: "NAT64 IPv4-mapped IPv6", strategy: "rightmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "3.3.3.3"), ("X-Forwarded-For", "4.4.4.4, 64:ff9b::188.0.2.128"), ("Forwarded", "For=\"::ffff:bc15:0006\""), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("64:ff9b::bc00:280"), ours: Some("64:ff9b::bc00:280"), why: "" },
    Case { name: "XFF: rightmost not desirable", strategy: "rightmost-non-private:x-forwarded-for", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"), ("X-Forwarded-For", "::1, nope"), ("Forwarded", "For=\"::ffff:bc15:0006\""), ("Forwarded", "host=what;for=6.6.6.6;proto=https")], go: Some("5.5.5.5"), ours: None, why: BROKEN_STOPS },
    Case { name: "Forwarded: rightmost not desirable", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope"), ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"), ("Forwarded", "host=what;for=:48485;proto=https,For=2.2.2.2"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\"")], go: Some("2.2.2.2"), ours: None, why: BROKEN_STOPS },
    Case { name: "Fail: XFF: none acceptable", strategy: "rightmost-non-private:X-Forwarded-For", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope"), ("X-Forwarded-For", "192.168.1.1, !?!, ::, 0.0.0.0"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"fe80::abcd%zone\"")], go: None, ours: None, why: "" },
    Case { name: "Fail: Forwarded: none acceptable", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::1, nope"), ("X-Forwarded-For", "192.168.1.1, 2.2.2.2"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"::ffff:ac15:0006%zone\", For=\"::\", For=0.0.0.0")], go: None, ours: None, why: "" },
    // Go's only case with a peer: a public one. Ours has no answer for a
    // public peer either (its headers are not read; the chain goes on).
    Case { name: "Fail: XFF: no header", strategy: "rightmost-non-private:Forwarded", trusted: NONE, peer: "9.9.9.9", headers: &[("X-Real-Ip", "1.1.1.1"), ("Forwarded", "For=\"\", For=\"::ffff:192.168.1.1\""), ("Forwarded", "host=what;for=:48485;proto=https,For=\"::ffff:ac15:0006%zone\"")], go: None, ours: None, why: "" },
    Case { name: "Fail: Forwarded: no header", strategy: "rightmost-non-private:forwarded", trusted: NONE, peer: P, headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "64:ff9b::188.0.2.128, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4")], go: None, ours: None, why: "" },
];

const XFF_MANY: &[(&str, &str)] = &[
    ("X-Real-Ip", "1.1.1.1"),
    ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"),
    ("X-Forwarded-For", "::1, fe80::382b:141b:fa4a:2a16%28"),
    (
        "X-Forwarded-For",
        "7.7.7.7.7, 8.8.8.8, 9.9.9.9, 10.10.10.10,11.11.11.11, 12.12.12.12",
    ),
];

// TestRightmostTrustedCountStrategy. Neither side looks at the peer.
const TRUSTED_COUNT: &[Case] = &[
    Case {
        name: "Count one",
        strategy: "rightmost-trusted-count:1:Forwarded",
        trusted: NONE,
        peer: P,
        headers: &[
            ("X-Real-Ip", "1.1.1.1"),
            ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"),
            ("X-Forwarded-For", "::1, fe80::382b:141b:fa4a:2a16%28"),
            ("Forwarded", "For=\"::ffff:bc15:0006\""),
            ("Forwarded", "host=what;for=6.6.6.6;proto=https"),
        ],
        go: Some("6.6.6.6"),
        ours: Some("6.6.6.6"),
        why: "",
    },
    Case {
        name: "Count five",
        strategy: "rightmost-trusted-count:5:X-Forwarded-For",
        trusted: NONE,
        peer: P,
        headers: XFF_MANY,
        go: Some("8.8.8.8"),
        ours: Some("8.8.8.8"),
        why: "",
    },
    Case {
        name: "Fail: header too short/count too large",
        strategy: "rightmost-trusted-count:50:X-Forwarded-For",
        trusted: NONE,
        peer: P,
        headers: XFF_MANY,
        go: None,
        ours: Some("10.0.0.5"),
        why: ENVOY_TOO_FEW,
    },
    Case {
        name: "Fail: bad value at count index",
        strategy: "rightmost-trusted-count:2:Forwarded",
        trusted: NONE,
        peer: P,
        headers: &[
            ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"),
            ("Forwarded", "For=\"::ffff:bc15:0006\""),
            ("Forwarded", "For=nope"),
            ("Forwarded", "host=what;for=6.6.6.6;proto=https"),
        ],
        go: None,
        ours: None,
        why: "",
    },
    Case {
        name: "Fail: zero value at count index",
        strategy: "rightmost-trusted-count:2:Forwarded",
        trusted: NONE,
        peer: P,
        headers: &[
            ("X-Forwarded-For", "4.4.4.4, 5.5.5.5"),
            ("Forwarded", "For=\"::ffff:bc15:0006\""),
            ("Forwarded", "For=0.0.0.0"),
            ("Forwarded", "host=what;for=6.6.6.6;proto=https"),
        ],
        go: None,
        ours: None,
        why: "",
    },
    Case {
        name: "Fail: header missing",
        strategy: "rightmost-trusted-count:1:Forwarded",
        trusted: NONE,
        peer: P,
        headers: XFF_MANY,
        go: None,
        ours: Some("10.0.0.5"),
        why: ENVOY_TOO_FEW,
    },
];

const CLOUDFLARE: &[&str] = &[
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "108.162.192.0/18",
    "131.0.72.0/22",
    "141.101.64.0/18",
    "162.158.0.0/15",
    "172.64.0.0/13",
    "173.245.48.0/20",
    "188.114.96.0/20",
    "190.93.240.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "2400:cb00::/32",
    "2405:8100::/32",
    "2405:b500::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

const XFF_234: &[(&str, &str)] = &[
    ("X-Real-Ip", "1.1.1.1"),
    ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"),
    ("X-Forwarded-For", "4.4.4.4"),
];

// TestRightmostTrustedRangeStrategy. Where Go leaves the peer empty (its
// "walk the header" case) ours is an address inside the trusted ranges.
const TRUSTED_RANGE: &[Case] = &[
    Case { name: "No ranges", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: NONE, peer: "9.9.9.9", headers: XFF_234, go: Some("4.4.4.4"), ours: Some("9.9.9.9"), why: "with nothing trusted no peer can speak for anyone, so the peer is the client (Go answers the same for any IP peer, by its own peer check; its 4.4.4.4 needs an empty RemoteAddr, which a socket never has)" },
    Case { name: "One range", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: &["4.4.4.0/24"], peer: "4.4.4.9", headers: XFF_234, go: Some("3.3.3.3"), ours: Some("3.3.3.3"), why: "" },
    Case { name: "One IP", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: &["4.4.4.4"], peer: "4.4.4.4:443", headers: XFF_234, go: Some("3.3.3.3"), ours: Some("3.3.3.3"), why: "" },
    Case { name: "Many kinds of ranges", strategy: "rightmost-trusted-range:Forwarded", trusted: &["2.2.2.2/32", "2607:f8b0:4004:83f::200e/128", "3.3.0.0/16", "2001:db7::/64", "::ffff:4.4.4.4/124", "64:ff9b::188.0.2.128/112"], peer: "3.3.0.1", headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("Forwarded", "For=99.99.99.99, For=4.4.4.8, For=\"[2607:f8b0:4004:83f::200e]:4747\""), ("Forwarded", "For=2.2.2.2:8883, For=64:ff9b::188.0.2.200, For=3.3.5.5, For=2001:db7::abcd")], go: Some("99.99.99.99"), ours: Some("99.99.99.99"), why: "" },
    Case { name: "Cloudflare ranges", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: CLOUDFLARE, peer: "173.245.48.1", headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4"), ("X-Forwarded-For", "2400:cb00::1")], go: Some("4.4.4.4"), ours: Some("4.4.4.4"), why: "" },
    Case { name: "Peer untrusted: returns peer, ignores spoofed header", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: TEN, peer: "9.9.9.9:1234", headers: &[("X-Forwarded-For", "1.2.3.4, 10.0.0.1")], go: Some("9.9.9.9"), ours: Some("9.9.9.9"), why: "" },
    Case { name: "Peer untrusted, no header: returns peer", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: TEN, peer: "9.9.9.9", headers: &[], go: Some("9.9.9.9"), ours: Some("9.9.9.9"), why: "" },
    Case { name: "Peer untrusted IPv6 with zone: returns peer with zone", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: TEN, peer: "[fe80::1%2]:9999", headers: &[("X-Forwarded-For", "1.2.3.4")], go: Some("fe80::1%eth0"), ours: Some("fe80::1"), why: ZONE },
    Case { name: "Peer trusted: walks header as normal", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: TEN, peer: P, headers: &[("X-Forwarded-For", "3.3.3.3, 10.0.0.1")], go: Some("3.3.3.3"), ours: Some("3.3.3.3"), why: "" },
    // "Peer Unix socket", "Peer empty", "Peer garbage": no socket address
    // has those forms.
    Case { name: "Peer unspecified IP: walks header as normal", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: TEN, peer: "0.0.0.0", headers: &[("X-Forwarded-For", "3.3.3.3, 10.0.0.1")], go: Some("3.3.3.3"), ours: None, why: "no connection comes from 0.0.0.0 (RFC 1122 section 3.2.1.3: only a host learning its own address may use it as a source), so an unspecified peer is neither the client nor a proxy to believe; Go treats it like a Unix socket and walks the header" },
    Case { name: "Fail: no non-trusted IP", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: &["2.2.2.0/24"], peer: "2.2.2.9", headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2:3384, 2.2.2.3"), ("X-Forwarded-For", "2.2.2.4")], go: None, ours: Some("2.2.2.2"), why: NGINX_ALL_TRUSTED },
    Case { name: "Fail: rightmost non-trusted IP invalid", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: &["2.2.2.0/24"], peer: "2.2.2.9", headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "nope, 2.2.2.2:3384, 2.2.2.3"), ("X-Forwarded-For", "2.2.2.4")], go: None, ours: Some("2.2.2.2"), why: NGINX_BROKEN },
    Case { name: "Fail: rightmost non-trusted IP unspecified", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: &["2.2.2.0/24"], peer: "2.2.2.9", headers: &[("X-Real-Ip", "1.1.1.1"), ("X-Forwarded-For", "::, 2.2.2.2:3384, 2.2.2.3"), ("X-Forwarded-For", "2.2.2.4")], go: None, ours: Some("2.2.2.2"), why: NGINX_BROKEN },
    Case { name: "Fail: no values in header", strategy: "rightmost-trusted-range:X-Forwarded-For", trusted: &["2.2.2.0/24"], peer: "2.2.2.9", headers: &[("X-Real-Ip", "1.1.1.1")], go: None, ours: Some("2.2.2.9"), why: NGINX_NO_HEADER },
];

// TestChainStrategy.
const CHAIN: &[Case] = &[
    Case { name: "Single strategy", strategy: "remote-addr", trusted: NONE, peer: "5.5.5.5", headers: XFF_234, go: Some("5.5.5.5"), ours: Some("5.5.5.5"), why: "" },
    // Issue 10's fall-through: the public peer gives rightmost-non-private
    // no answer, so the chain reaches X-Real-IP (from the peer, trusted).
    Case { name: "Multiple strategies", strategy: "rightmost-non-private:Forwarded, single-header:true-client-ip, single-header:x-real-ip, remote-addr", trusted: &["5.5.5.5"], peer: "5.5.5.5", headers: XFF_234, go: Some("1.1.1.1"), ours: Some("1.1.1.1"), why: "" },
    Case { name: "Fail: No strategies", strategy: "", trusted: NONE, peer: "5.5.5.5", headers: XFF_234, go: None, ours: None, why: "" },
    // Go's RemoteAddr is empty; 0.0.0.0 fails its RemoteAddrStrategy the same way.
    Case { name: "Fail: Multiple strategies, all fail", strategy: "rightmost-non-private:Forwarded, single-header:true-client-ip, single-header:x-real-ip, remote-addr", trusted: NONE, peer: "0.0.0.0", headers: &[("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"), ("X-Forwarded-For", "4.4.4.4")], go: None, ours: None, why: "" },
];

// Test_isPrivateOrLocal, through rightmost-non-private: a public entry is
// the answer, a non-public one is passed over. ("bad (null) IP" is a Go
// nil, which has no counterpart.)
const IS_PRIVATE_OR_LOCAL: &[Case] = &[
    Case { name: "IPv4 loopback", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "127.0.0.2")], go: None, ours: None, why: "" },
    Case { name: "IPv6 loopback", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "::1")], go: None, ours: None, why: "" },
    Case { name: "IPv4 10.*", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "10.0.0.1")], go: None, ours: None, why: "" },
    Case { name: "IPv4 192.168.*", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "192.168.1.1")], go: None, ours: None, why: "" },
    Case { name: "IPv6 unique local address", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "fd12:3456:789a:1::1")], go: None, ours: None, why: "" },
    Case { name: "IPv4 link-local", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "169.254.1.1")], go: None, ours: None, why: "" },
    Case { name: "IPv6 link-local", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "fe80::abcd")], go: None, ours: None, why: "" },
    Case { name: "Non-local IPv4", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "1.1.1.1")], go: Some("1.1.1.1"), ours: Some("1.1.1.1"), why: "" },
    Case { name: "Non-local IPv4-mapped IPv6", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "::ffff:188.0.2.128")], go: Some("188.0.2.128"), ours: Some("188.0.2.128"), why: "" },
    Case { name: "IPv4 RFC 2544 benchmarking", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "198.18.5.5")], go: None, ours: None, why: "" },
    Case { name: "IPv4 192.18.0.0/15 is public", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "192.18.5.5")], go: Some("192.18.5.5"), ours: Some("192.18.5.5"), why: "" },
    // Not Go cases: the blocks where our list of not-public addresses
    // differs from Go's (see trust::not_public for the argument).
    Case { name: "(ours) zoned link-local", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "1.1.1.1, fe80::1%eth0")], go: Some("1.1.1.1"), ours: Some("1.1.1.1"), why: "" },
    Case { name: "(ours) Teredo", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "1.1.1.1, 2001:0:4136:e378:8000:63bf:3fff:fdd2")], go: Some("1.1.1.1"), ours: Some("2001:0:4136:e378:8000:63bf:3fff:fdd2"), why: "IANA marks Teredo N/A, not False: it is the real address of a tunnelled client (RFC 4380), so public" },
    Case { name: "(ours) 6to4", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "1.1.1.1, 2002:c000:204::1")], go: Some("1.1.1.1"), ours: Some("2002:c000:204::1"), why: "IANA marks 6to4 N/A: RFC 7526 deprecated the relay anycast prefix, not 6to4 addresses, which are real clients'; so public" },
    Case { name: "(ours) AS112-v6 inside 2001::/23", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "1.1.1.1, 2001:4:112::1")], go: Some("1.1.1.1"), ours: Some("2001:4:112::1"), why: "IANA: globally reachable, carved out of 2001::/23 (\"unless allowed by a more specific allocation\")" },
    Case { name: "(ours) IPv6 documentation 3fff::/20", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "1.1.1.1, 3fff::1")], go: Some("3fff::1"), ours: Some("1.1.1.1"), why: "RFC 9637 (2024) added 3fff::/20 for documentation, not globally reachable" },
    Case { name: "(ours) the lab's internet client", strategy: "rightmost-non-private", trusted: NONE, peer: P, headers: &[("X-Forwarded-For", "203.0.113.7")], go: None, ours: None, why: "" },
];

/// How realclientip-go's constructors and ours take a strategy's arguments.
struct Construct {
    go_test: &'static str,
    name: &'static str,
    strategy: &'static str,
    go_ok: bool,
    ours_ok: bool,
    why: &'static str,
}

const ANY_LIST_HEADER: &str = "our list strategies read any list header by name (a proxy may \
                               use X-Original-Forwarded-For or its own); Go allows only \
                               X-Forwarded-For and Forwarded";

const CONSTRUCT: &[Construct] = &[
    Construct { go_test: "TestSingleIPHeaderStrategy", name: "Error: empty header name", strategy: "single-header:", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestSingleIPHeaderStrategy", name: "Error: X-Forwarded-For header", strategy: "single-header:X-Forwarded-For", go_ok: false, ours_ok: true, why: "allowed: a list value is refused per request (more than one address is not a single IP), which says more than refusing the configuration" },
    Construct { go_test: "TestLeftmostNonPrivateStrategy", name: "Error: empty header name", strategy: "leftmost-non-private:", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestLeftmostNonPrivateStrategy", name: "Error: invalid header", strategy: "leftmost-non-private:X-Real-IP", go_ok: false, ours_ok: true, why: ANY_LIST_HEADER },
    Construct { go_test: "TestRightmostNonPrivateStrategy", name: "Error: empty header name", strategy: "rightmost-non-private:", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestRightmostNonPrivateStrategy", name: "Error: invalid header", strategy: "rightmost-non-private:X-Real-IP", go_ok: false, ours_ok: true, why: ANY_LIST_HEADER },
    Construct { go_test: "TestRightmostTrustedCountStrategy", name: "Error: empty header name", strategy: "rightmost-trusted-count:1:", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestRightmostTrustedCountStrategy", name: "Error: invalid header", strategy: "rightmost-trusted-count:1:X-Real-IP", go_ok: false, ours_ok: true, why: ANY_LIST_HEADER },
    Construct { go_test: "TestRightmostTrustedCountStrategy", name: "Error: zero trustedCount", strategy: "rightmost-trusted-count:0:x-forwarded-for", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestRightmostTrustedCountStrategy", name: "Error: negative trustedCount", strategy: "rightmost-trusted-count:-999:X-Forwarded-For", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestRightmostTrustedRangeStrategy", name: "Error: empty header nanme", strategy: "rightmost-trusted-range:", go_ok: false, ours_ok: false, why: "" },
    Construct { go_test: "TestRightmostTrustedRangeStrategy", name: "Error: bad header nanme", strategy: "rightmost-trusted-range:Not-XFF-Or-Forwarded", go_ok: false, ours_ok: true, why: ANY_LIST_HEADER },
];

fn peer(s: &str) -> SocketAddr {
    match s.parse() {
        Ok(sa) => sa,
        Err(_) => SocketAddr::new(s.parse().expect("a peer address"), 0),
    }
}

/// Run a table; report every case that fails, not just the first.
fn run(go_test: &str, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let chain = if c.strategy.is_empty() {
            Vec::new()
        } else {
            Strategy::parse_chain(c.strategy).expect("our strategy parses")
        };
        let r = Resolver::new(TrustSet::parse(c.trusted.iter().copied()).unwrap(), chain);
        let req = Request::new(peer(c.peer), c.headers);
        let fast = r.resolve(&req);
        let full = r.explain(&req);
        if fast != full.client {
            failures.push(format!(
                "{}: resolve {fast:?} but explain {:?}",
                c.name, full.client
            ));
        }
        let got = fast.map(|a| a.ip.to_string());
        if got.as_deref() != c.ours {
            let why = full
                .decisive()
                .map(|s| s.stop.to_string())
                .unwrap_or_default();
            failures.push(format!(
                "{}: got {got:?}, want {:?} ({why})",
                c.name, c.ours
            ));
        }
        match (c.why.is_empty(), c.go == c.ours) {
            (true, false) => failures.push(format!("{}: differs from Go without a why", c.name)),
            (false, true) => failures.push(format!("{}: agrees with Go but says why not", c.name)),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{go_test}:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn remote_addr() {
    run("TestRemoteAddrStrategy", REMOTE_ADDR);
}

#[test]
fn single_ip_header() {
    run("TestSingleIPHeaderStrategy", SINGLE_HEADER);
}

#[test]
fn leftmost_non_private() {
    run("TestLeftmostNonPrivateStrategy", LEFTMOST);
}

#[test]
fn rightmost_non_private() {
    run("TestRightmostNonPrivateStrategy", RIGHTMOST_NON_PRIVATE);
}

#[test]
fn rightmost_trusted_count() {
    run("TestRightmostTrustedCountStrategy", TRUSTED_COUNT);
}

#[test]
fn rightmost_trusted_range() {
    run("TestRightmostTrustedRangeStrategy", TRUSTED_RANGE);
}

#[test]
fn chain() {
    run("TestChainStrategy", CHAIN);
}

#[test]
fn is_private_or_local() {
    run("Test_isPrivateOrLocal", IS_PRIVATE_OR_LOCAL);
}

#[test]
fn constructors() {
    let mut failures = Vec::new();
    for c in CONSTRUCT {
        let ok = Strategy::parse_chain(c.strategy).is_ok();
        if ok != c.ours_ok {
            failures.push(format!("{} {}: parses {ok}", c.go_test, c.name));
        }
        if c.why.is_empty() != (c.go_ok == c.ours_ok) {
            failures.push(format!("{} {}: why does not match", c.go_test, c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
