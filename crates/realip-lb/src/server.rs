//! Running a [`Config`]: bind the listeners, start the pools' health
//! checks, and apply a new configuration in place (SIGHUP).
//!
//! A reload is all or nothing. Everything that can fail (TLS files, new
//! listening sockets) is prepared first; if any of it fails, the reload
//! is refused and the running configuration is untouched. Then, for each
//! listener on an address that stays, the new settings are handed over:
//! connections read them per request (HTTP) or per new connection (TCP,
//! UDP flows), so nothing in flight is dropped. Listeners no longer in the
//! file stop accepting and let their connections finish. A pool whose
//! definition did not change keeps its health state and checks; a changed
//! one keeps what was known of the backends it still has.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, HttpListener, ListenerSpec, Mode, PoolSpec};
use crate::config::{TcpListener, UdpClientIp, UdpListener};
use crate::forward::{Forwarding, RequestIds};
use crate::http::upstream::{PoolLimits, Upstream};
use crate::http::{HttpStats, Site};
use crate::metrics::{ListenerView, View};
use crate::pool::{Checks, Pool};
use crate::route::{Route, RouteError, Routes};
use crate::tcp::{ProxyTlvs, TcpConfig, TcpSite, TcpStats};
use crate::udp::{UdpConfig, UdpSite, UdpStats};

struct RunningPool {
    spec: PoolSpec,
    pool: Arc<Pool>,
    stop: watch::Sender<bool>,
}

/// A listener serving site settings `S`, which a reload replaces.
struct RunningListener<S> {
    tx: watch::Sender<Arc<S>>,
    stop: watch::Sender<bool>,
    view: ListenerView,
    local: SocketAddr,
}

/// The listeners by mode, then address: a reload hands an address's new
/// settings to the listener of the same mode there, whose type they fit.
#[derive(Default)]
struct Listeners {
    http: BTreeMap<SocketAddr, RunningListener<Site>>,
    tcp: BTreeMap<SocketAddr, RunningListener<TcpSite>>,
    udp: BTreeMap<SocketAddr, RunningListener<UdpSite>>,
}

impl Listeners {
    /// Every listener's mode name, address and view, http first, then tcp
    /// and udp, each by address.
    fn all(&self) -> impl Iterator<Item = (&'static str, &SocketAddr, &ListenerView, SocketAddr)> {
        let http = self.http.iter().map(|(a, l)| ("http", a, &l.view, l.local));
        let tcp = self.tcp.iter().map(|(a, l)| ("tcp", a, &l.view, l.local));
        let udp = self.udp.iter().map(|(a, l)| ("udp", a, &l.view, l.local));
        http.chain(tcp).chain(udp)
    }

    fn stop(&self) {
        for l in self.http.values() {
            let _ = l.stop.send(true);
        }
        for l in self.tcp.values() {
            let _ = l.stop.send(true);
        }
        for l in self.udp.values() {
            let _ = l.stop.send(true);
        }
    }
}

/// A listener's new settings, and the socket bound for it if no listener
/// of its mode runs on its address yet.
enum Ready {
    Http(Arc<Site>, Option<tokio::net::TcpListener>),
    Tcp(Arc<TcpSite>, Option<tokio::net::TcpListener>),
    Udp(Arc<UdpSite>, Option<tokio::net::UdpSocket>),
}

/// The load balancer as running now.
pub struct Running {
    pools: BTreeMap<String, RunningPool>,
    listeners: Listeners,
    /// Every connection counter ever started, so draining waits for
    /// listeners removed by a reload too.
    all_conns: Vec<Arc<TcpStats>>,
    upstream: Arc<Upstream>,
    view: watch::Sender<Arc<View>>,
    metrics: Option<SocketAddr>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let listeners: Vec<_> = self.listeners.all().map(|(m, a, _, _)| (m, a)).collect();
        f.debug_struct("Running")
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .field("listeners", &listeners)
            .finish_non_exhaustive()
    }
}

/// Why a configuration could not be started or applied (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A listener's trusted list does not parse.
    #[error("{listener}: trusted: {source}")]
    Trusted {
        /// The listener.
        listener: String,
        /// Why.
        source: realip_core::TrustError,
    },
    /// A listener names a pool that is not defined.
    #[error("{listener}: no pool is named {pool:?}")]
    NoPool {
        /// The listener.
        listener: String,
        /// The pool named.
        pool: String,
    },
    /// A listener's route cannot be used.
    #[error("{listener}: {source}")]
    Route {
        /// The listener.
        listener: String,
        /// Why.
        source: RouteError,
    },
    /// A listener's TLS files cannot be used.
    #[error("{listener}: {source}")]
    Tls {
        /// The listener.
        listener: String,
        /// Why.
        source: realip_net::tls::TlsError,
    },
    /// A listening socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Running {
    /// Start `config`: bind everything, or fail with nothing running.
    pub async fn start(config: &Config) -> Result<Running, ApplyError> {
        let (view, _) = watch::channel(Arc::new(View::default()));
        let mut r = Running {
            pools: BTreeMap::new(),
            listeners: Listeners::default(),
            all_conns: Vec::new(),
            upstream: Upstream::new(PoolLimits::default()),
            view,
            metrics: None,
        };
        r.apply(config).await?;
        Ok(r)
    }

    /// Where each listener listens (by name), and the metrics address.
    pub fn addresses(&self) -> (Vec<(String, &'static str, SocketAddr)>, Option<SocketAddr>) {
        let l = self
            .listeners
            .all()
            .map(|(mode, _, view, local)| (view.name.clone(), mode, local))
            .collect();
        (l, self.metrics)
    }

    /// Apply `config` in place; on error nothing changed.
    pub async fn apply(&mut self, config: &Config) -> Result<(), ApplyError> {
        // 1. Pools: unchanged ones are kept whole.
        let mut pools: BTreeMap<String, (Arc<Pool>, bool)> = BTreeMap::new();
        for (name, spec) in &config.pools {
            match self.pools.get(name) {
                Some(old) if old.spec == *spec => {
                    pools.insert(name.clone(), (old.pool.clone(), false));
                }
                old => {
                    let pool = Arc::new(Pool::new(
                        spec.schedule.0,
                        spec.backends.iter().map(|b| b.0.clone()).collect(),
                    ));
                    if let (Some(old), Some(_)) = (old, &spec.health) {
                        pool.inherit(&old.pool);
                    }
                    pools.insert(name.clone(), (pool, true));
                }
            }
        }
        // 2. Settings of every listener (TLS files are read here).
        let mut ready = Vec::new();
        for l in &config.listeners {
            ready.push(match &l.mode {
                Mode::Http(h) => Ready::Http(http_site(l, h, &pools)?, None),
                Mode::Tcp(t) => Ready::Tcp(tcp_site(l, t, &pools)?, None),
                Mode::Udp(u) => Ready::Udp(udp_site(l, u, &pools)?, None),
            });
        }
        // 3. New sockets.
        for (l, r) in config.listeners.iter().zip(&mut ready) {
            let addr = l.listen.0;
            let bind = |source| ApplyError::Bind { addr, source };
            match r {
                Ready::Http(_, socket) if !self.listeners.http.contains_key(&addr) => {
                    *socket = Some(tokio::net::TcpListener::bind(addr).await.map_err(bind)?);
                }
                Ready::Tcp(_, socket) if !self.listeners.tcp.contains_key(&addr) => {
                    *socket = Some(tokio::net::TcpListener::bind(addr).await.map_err(bind)?);
                }
                Ready::Udp(_, socket) if !self.listeners.udp.contains_key(&addr) => {
                    *socket = Some(tokio::net::UdpSocket::bind(addr).await.map_err(bind)?);
                }
                _ => {}
            }
        }
        let metrics = match config.metrics {
            Some(a) if self.metrics.is_none() => Some(
                tokio::net::TcpListener::bind(a.0)
                    .await
                    .map_err(|source| ApplyError::Bind { addr: a.0, source })?,
            ),
            _ => None,
        };
        // 4. Commit: nothing below fails.
        let mut old = std::mem::take(&mut self.listeners);
        let mut new = Listeners::default();
        for (l, ready) in config.listeners.iter().zip(ready) {
            let (addr, name) = (l.listen.0, l.display_name());
            match ready {
                Ready::Http(site, socket) => carry(
                    &mut old.http,
                    &mut new.http,
                    addr,
                    name,
                    site,
                    socket,
                    |t, rx, stop, view| {
                        let conns = Arc::new(TcpStats::default());
                        let stats = Arc::new(HttpStats::default());
                        self.all_conns.push(conns.clone());
                        view.conns = Some(conns.clone());
                        view.http = Some(stats.clone());
                        let local = t.local_addr().unwrap_or(addr);
                        let shared = Arc::new(crate::http::Shared {
                            site: rx,
                            conns,
                            stats,
                            upstream: self.upstream.clone(),
                            raw: crate::http::upstream::RawPool::new(PoolLimits::default()),
                            ids: RequestIds::default(),
                        });
                        tokio::spawn(crate::http::serve(t, shared, stop));
                        local
                    },
                ),
                Ready::Tcp(site, socket) => carry(
                    &mut old.tcp,
                    &mut new.tcp,
                    addr,
                    name,
                    site,
                    socket,
                    |t, rx, stop, view| {
                        let conns = Arc::new(TcpStats::default());
                        self.all_conns.push(conns.clone());
                        view.conns = Some(conns.clone());
                        let local = t.local_addr().unwrap_or(addr);
                        tokio::spawn(crate::tcp::serve(t, rx, conns, stop));
                        local
                    },
                ),
                Ready::Udp(site, socket) => carry(
                    &mut old.udp,
                    &mut new.udp,
                    addr,
                    name,
                    site,
                    socket,
                    |u, rx, stop, view| {
                        let stats = Arc::new(UdpStats::default());
                        view.udp = Some(stats.clone());
                        let local = u.local_addr().unwrap_or(addr);
                        tokio::spawn(crate::udp::serve(u, rx, stats, stop));
                        local
                    },
                ),
            }
        }
        for (_, addr, gone, _) in old.all() {
            tracing::info!(listener = %gone.name, addr = %addr, "listener removed; its connections finish");
        }
        old.stop();
        self.listeners = new;
        let mut running = BTreeMap::new();
        for (name, (pool, fresh)) in pools {
            let spec = config.pools[&name].clone();
            if !fresh {
                if let Some(old) = self.pools.remove(&name) {
                    running.insert(name, old);
                    continue;
                }
            }
            let (stop, stop_rx) = watch::channel(false);
            if let Some(h) = &spec.health {
                let checks = Checks {
                    check: h.check.0.clone(),
                    interval: h.interval.0,
                    timeout: h.timeout.0,
                    rise: h.rise,
                    fall: h.fall,
                    port: h.port,
                };
                tokio::spawn(crate::pool::run_checks(pool.clone(), checks, stop_rx));
            }
            running.insert(name, RunningPool { spec, pool, stop });
        }
        for (_, gone) in std::mem::replace(&mut self.pools, running) {
            let _ = gone.stop.send(true);
        }
        if let Some(m) = metrics {
            self.metrics = m.local_addr().ok();
            tokio::spawn(crate::metrics::serve(m, self.view.subscribe()));
        }
        self.view.send_replace(Arc::new(View {
            listeners: self.listeners.all().map(|(_, _, v, _)| v.clone()).collect(),
            pools: self
                .pools
                .iter()
                .map(|(n, p)| (n.clone(), p.pool.clone()))
                .collect(),
        }));
        Ok(())
    }

    /// Stop accepting everywhere, ask open connections to finish, wait up
    /// to `grace`; returns how many were still open.
    pub async fn stop(self, grace: Duration) -> u64 {
        self.listeners.stop();
        for p in self.pools.values() {
            let _ = p.stop.send(true);
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let open: u64 = self
                .all_conns
                .iter()
                .map(|c| c.open.load(Ordering::Relaxed))
                .sum();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Hands `site` to the listener already on `addr` in `old` (moving it to
/// `new`), or starts one on `socket` with `start`, which returns the
/// address it listens on. There is no socket only when one was running.
fn carry<S, B>(
    old: &mut BTreeMap<SocketAddr, RunningListener<S>>,
    new: &mut BTreeMap<SocketAddr, RunningListener<S>>,
    addr: SocketAddr,
    name: String,
    site: Arc<S>,
    socket: Option<B>,
    start: impl FnOnce(
        B,
        watch::Receiver<Arc<S>>,
        watch::Receiver<bool>,
        &mut ListenerView,
    ) -> SocketAddr,
) {
    if let Some(mut running) = old.remove(&addr) {
        running.tx.send_replace(site);
        running.view.name = name;
        new.insert(addr, running);
        return;
    }
    let Some(socket) = socket else {
        return;
    };
    let (tx, rx) = watch::channel(site);
    let (stop, stop_rx) = watch::channel(false);
    let mut view = ListenerView {
        name,
        conns: None,
        http: None,
        udp: None,
    };
    let local = start(socket, rx, stop_rx, &mut view);
    tracing::info!(listener = %view.name, addr = %local, "listener up");
    new.insert(
        addr,
        RunningListener {
            tx,
            stop,
            view,
            local,
        },
    );
}

/// The listener's trust set, or why not.
fn trusted(l: &ListenerSpec) -> Result<realip_core::TrustSet, ApplyError> {
    l.trust().map_err(|source| ApplyError::Trusted {
        listener: l.display_name(),
        source,
    })
}

fn pool_of(
    l: &ListenerSpec,
    pools: &BTreeMap<String, (Arc<Pool>, bool)>,
    name: &str,
) -> Result<Arc<Pool>, ApplyError> {
    pools
        .get(name)
        .map(|(p, _)| p.clone())
        .ok_or_else(|| ApplyError::NoPool {
            listener: l.display_name(),
            pool: name.to_string(),
        })
}

fn http_site(
    l: &ListenerSpec,
    h: &HttpListener,
    pools: &BTreeMap<String, (Arc<Pool>, bool)>,
) -> Result<Arc<Site>, ApplyError> {
    let trusted = trusted(l)?;
    let mut routes = Vec::new();
    for r in &h.routes {
        let pool = pool_of(l, pools, &r.pool)?;
        let route =
            Route::new(r.host.as_deref(), &r.path, pool).map_err(|source| ApplyError::Route {
                listener: l.display_name(),
                source,
            })?;
        routes.push(route);
    }
    let tls = match &h.tls {
        None => None,
        Some(t) => Some(
            realip_net::tls::acceptor(&realip_net::tls::TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
                cacert: None,
            })
            .map_err(|source| ApplyError::Tls {
                listener: l.display_name(),
                source,
            })?,
        ),
    };
    Ok(Arc::new(Site {
        routes: Routes::new(routes),
        forwarding: Forwarding {
            headers: h.header_set(),
            xff: h.xff.0,
            underscores: h.underscores.0,
            resolver: realip_core::Resolver::new(trusted, h.strategies()),
        },
        tls,
        accept_proxy: h.accept_proxy.0,
        upgrades: h.upgrade_tokens(),
        limits: h.limits(),
    }))
}

fn tcp_site(
    l: &ListenerSpec,
    t: &TcpListener,
    pools: &BTreeMap<String, (Arc<Pool>, bool)>,
) -> Result<Arc<TcpSite>, ApplyError> {
    let trusted = trusted(l)?;
    let tlvs = t
        .proxy_v2
        .as_ref()
        .map_or_else(ProxyTlvs::default, |t| ProxyTlvs {
            unique_id: t.unique_id,
            crc32c: t.crc32c,
            authority: t.authority.clone(),
        });
    Ok(Arc::new(TcpSite {
        pool: pool_of(l, pools, &t.pool)?,
        config: TcpConfig {
            client_ip: t.client_ip.0,
            accept_proxy: t.accept_proxy.0,
            trusted,
            connect_timeout: t.connect_timeout.0,
            idle_timeout: t.idle_timeout.0,
            tlvs,
            max_connections: t.max_connections,
        },
    }))
}

fn udp_site(
    l: &ListenerSpec,
    u: &UdpListener,
    pools: &BTreeMap<String, (Arc<Pool>, bool)>,
) -> Result<Arc<UdpSite>, ApplyError> {
    // Not used by UDP, but a list that does not parse is refused for
    // every mode alike.
    trusted(l)?;
    Ok(Arc::new(UdpSite {
        pool: pool_of(l, pools, &u.pool)?,
        config: UdpConfig {
            proxy_v2: u.client_ip == UdpClientIp::ProxyV2,
            idle_timeout: u.idle_timeout.0,
            max_flows: u.max_connections,
        },
    }))
}
