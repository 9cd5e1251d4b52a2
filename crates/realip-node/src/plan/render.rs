//! The plan in `nft -f` syntax: what the golden tests pin down, what
//! `realip node plan` prints and what a person reads to check it. The
//! kernel path (`kernel`) does not go through this text.

use std::fmt;
use std::net::IpAddr;

use realip_core::Cidr;

use super::names::{
    ChainName, HAIRPIN, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS,
};
use super::ruleset::{Action, Key, Match, Ruleset, Verdict, MASQ_MARK};

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Drop => f.write_str("drop"),
            // Verdict maps cannot hold `reject`; a chain can.
            Verdict::Reject => write!(f, "goto {}", ChainName::Reject),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Dest(ip, p, port) => write!(f, "{ip} . {} . {port}", p.as_str()),
            Key::Port(p, port) => write!(f, "{} . {port}", p.as_str()),
        }
    }
}

fn cidr_list(c: &[Cidr]) -> String {
    if c.len() == 1 {
        c[0].to_string()
    } else {
        format!(
            "{{ {} }}",
            c.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Ruleset {
    fn fmt_match(&self, m: &Match) -> String {
        let f = self.family.nft();
        match m {
            Match::SaddrIn(c) => format!("{f} saddr {}", cidr_list(c)),
            Match::SaddrNotIn(c) => format!("{f} saddr != {}", cidr_list(c)),
            Match::SaddrEq(ip) => format!("{f} saddr {ip}"),
            Match::FibSaddrLocal => "fib saddr type local".into(),
            Match::SaddrInSet(s) => format!("{f} saddr @{s}"),
            Match::CtNew => "ct state new".into(),
            Match::CtInvalid => "ct state invalid".into(),
            Match::MarkClear => format!("meta mark & 0x{MASQ_MARK:x} == 0"),
            Match::RandomZero(n) => format!("numgen random mod {n} == 0"),
            Match::DestInSet(set) => format!("{f} daddr . meta l4proto . th dport @{set}"),
            Match::PortInSet(set) => format!("meta l4proto . th dport @{set}"),
            Match::LocalDest => format!(
                "fib daddr type local {f} daddr != {}",
                self.family.loopback()
            ),
            Match::Hairpin => format!("{f} saddr . {f} daddr @{HAIRPIN}"),
        }
    }

    fn fmt_action(&self, a: &Action) -> String {
        let f = self.family.nft();
        match a {
            Action::Jump(c) => format!("jump {c}"),
            Action::Goto(c) => format!("goto {c}"),
            Action::Return => "return".into(),
            Action::Drop => "drop".into(),
            Action::Reject => "reject".into(),
            Action::MarkMasq => format!("meta mark set meta mark | 0x{MASQ_MARK:x}"),
            Action::UnmarkMasq => format!("meta mark set meta mark ^ 0x{MASQ_MARK:x}"),
            Action::Masquerade => "masquerade fully-random".into(),
            Action::Dnat {
                proto,
                ip,
                port,
                affinity,
            } => {
                let update = affinity
                    .as_ref()
                    .map(|s| format!("update @{s} {{ {f} saddr }} "))
                    .unwrap_or_default();
                let to = match ip {
                    IpAddr::V4(v4) => format!("{v4}:{port}"),
                    IpAddr::V6(v6) => format!("[{v6}]:{port}"),
                };
                format!("meta l4proto {} {update}dnat to {to}", proto.as_str())
            }
            Action::DnatPick {
                proto,
                map,
                modulus,
            } => format!(
                "meta l4proto {} dnat {f} to numgen random mod {modulus} map @{map}",
                proto.as_str()
            ),
            Action::DispatchServices => {
                format!("{f} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}")
            }
            Action::DispatchNodePorts => {
                format!("meta l4proto . th dport vmap @{SERVICE_NODEPORTS}")
            }
            Action::DispatchNoEndpoints => format!(
                "{f} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}\n\t\tfib daddr type local {f} daddr != {} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}",
                self.family.loopback()
            ),
        }
    }
}

impl fmt::Display for Ruleset {
    /// The ruleset in `nft -f` syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family.nft(), self.table)?;
        for m in &self.maps {
            writeln!(f, "\tmap {} {{", m.name)?;
            if m.with_addr {
                writeln!(
                    f,
                    "\t\ttype {} . inet_proto . inet_service : verdict",
                    self.family.addr_type()
                )?;
            } else {
                writeln!(f, "\t\ttype inet_proto . inet_service : verdict")?;
            }
            if !m.elements.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                for (k, v) in &m.elements {
                    writeln!(f, "\t\t\t{k} : {v},")?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for p in &self.picks {
            writeln!(f, "\tmap {} {{", p.name)?;
            // `typeof`: the key is what numgen yields, a plain integer
            // that has no `type` name nft accepts.
            writeln!(
                f,
                "\t\ttypeof numgen random mod 1 : {} daddr . tcp dport",
                self.family.nft()
            )?;
            writeln!(f, "\t\tsize {}", p.size)?;
            writeln!(f, "\t\telements = {{")?;
            for (i, (ip, port)) in p.endpoints.iter().enumerate() {
                writeln!(f, "\t\t\t{i} : {ip} . {port},")?;
            }
            writeln!(f, "\t\t}}")?;
            writeln!(f, "\t}}")?;
        }
        for s in &self.sets {
            writeln!(f, "\tset {} {{", s.name)?;
            writeln!(f, "\t\ttype {}", self.family.addr_type())?;
            writeln!(f, "\t\tflags dynamic,timeout")?;
            writeln!(f, "\t\ttimeout {}s", s.timeout)?;
            writeln!(f, "\t}}")?;
        }
        let t = self.family.addr_type();
        if self.postrouting {
            writeln!(f, "\tset {HAIRPIN} {{")?;
            writeln!(f, "\t\ttype {t} . {t}")?;
            if !self.hairpin.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                for ip in &self.hairpin {
                    writeln!(f, "\t\t\t{ip} . {ip},")?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for ks in &self.key_sets {
            writeln!(f, "\tset {} {{", ks.name)?;
            if ks.with_addr {
                writeln!(f, "\t\ttype {t} . inet_proto . inet_service")?;
            } else {
                writeln!(f, "\t\ttype inet_proto . inet_service")?;
            }
            if !ks.keys.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                for k in &ks.keys {
                    writeln!(f, "\t\t\t{k},")?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for c in &self.chains {
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(h) = c.hook {
                writeln!(
                    f,
                    "\t\ttype {} hook {} priority {}; policy accept;",
                    h.kind, h.hook, h.priority
                )?;
            }
            for r in &c.rules {
                let mut parts: Vec<String> = r.matches.iter().map(|m| self.fmt_match(m)).collect();
                parts.push(self.fmt_action(&r.action));
                writeln!(f, "\t\t{}", parts.join(" "))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}
