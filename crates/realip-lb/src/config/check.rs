//! The rules no type can hold: references between parts of the file,
//! one listener per address, and settings that only make sense together.

use std::collections::BTreeSet;

use super::error::{KeyPath, Offence, Refused};
use super::listener::{ListenerSpec, Mode};
use super::model::Config;
use crate::route::{Route, RouteError};
use crate::tcp::ClientIp;

fn refused(offence: Offence, key: KeyPath) -> Refused {
    Refused { offence, key }
}

impl Config {
    /// The checks of [`Config::parse`] on a configuration built otherwise
    /// (from command-line flags).
    pub fn checked(&self) -> Result<(), Refused> {
        if self.listeners.is_empty() {
            return Err(refused(Offence::NoListener, KeyPath::top("listeners")));
        }
        for (name, p) in &self.pools {
            let at = KeyPath::pool(name);
            if p.backends.is_empty() {
                let offence = Offence::NoBackend { pool: name.clone() };
                return Err(refused(offence, at.key("backends")));
            }
            if let Some(h) = &p.health {
                let at = at.key("health");
                if h.rise == 0 || h.fall == 0 {
                    let key = if h.rise == 0 { "rise" } else { "fall" };
                    return Err(refused(Offence::HealthCount, at.key(key)));
                }
                if h.interval.0.is_zero() || h.timeout.0.is_zero() {
                    let key = if h.interval.0.is_zero() {
                        "interval"
                    } else {
                        "timeout"
                    };
                    return Err(refused(Offence::HealthTime, at.key(key)));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = KeyPath::listener(i);
            // The later of the two is the one pointed at: the first was
            // fine until the second came.
            if !seen.insert((l.mode.name().transport(), l.listen.0)) {
                let offence = Offence::ListenedTwice { addr: l.listen.0 };
                return Err(refused(offence, at.key("listen")));
            }
            if let Err(e) = l.trust() {
                return Err(refused(e.into(), at.key("trusted")));
            }
            self.check_mode(l, &at)?;
        }
        Ok(())
    }

    fn pool_ref(&self, name: &str, at: KeyPath) -> Result<(), Refused> {
        if self.pools.contains_key(name) {
            Ok(())
        } else {
            Err(refused(Offence::NoPool { pool: name.into() }, at))
        }
    }

    fn check_mode(&self, l: &ListenerSpec, at: &KeyPath) -> Result<(), Refused> {
        let accept_proxy = match &l.mode {
            Mode::Http(h) => {
                if h.routes.is_empty() {
                    return Err(refused(Offence::NoRoutes, at.clone().key("routes")));
                }
                for (k, r) in h.routes.iter().enumerate() {
                    let at = at.clone().key("routes").index(k);
                    self.pool_ref(&r.pool, at.clone().key("pool"))?;
                    if let Err(e) = Route::new(r.host.as_deref(), &r.path, ()) {
                        let key = match e {
                            RouteError::Prefix(_) => "path",
                            RouteError::Host(_) => "host",
                        };
                        return Err(refused(e.into(), at.key(key)));
                    }
                }
                h.accept_proxy.0
            }
            Mode::Tcp(t) => {
                self.pool_ref(&t.pool, at.clone().key("pool"))?;
                if t.proxy_v2.is_some() && t.client_ip.0 != ClientIp::ProxyV2 {
                    let key = at.clone().key("proxy_v2");
                    return Err(refused(Offence::TlvsWithoutProxyV2, key));
                }
                t.accept_proxy.0
            }
            Mode::Udp(u) => return self.pool_ref(&u.pool, at.clone().key("pool")),
        };
        if accept_proxy.is_on() && l.trusted.is_empty() {
            let key = at.clone().key("accept_proxy");
            return Err(refused(Offence::AcceptProxyUntrusted, key));
        }
        Ok(())
    }
}
