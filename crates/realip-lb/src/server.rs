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

use crate::config::{Config, ListenerSpec, Mode, PoolSpec};
use crate::forward::{Forwarding, RequestIds};
use crate::http::upstream::{PoolLimits, Upstream};
use crate::http::{HttpLimits, HttpStats, Site};
use crate::metrics::{ListenerView, View};
use crate::pool::{Checks, Pool};
use crate::route::{Route, RouteError, Routes};
use crate::tcp::{ClientIp, ProxyTlvs, TcpConfig, TcpSite, TcpStats};
use crate::udp::{UdpConfig, UdpSite, UdpStats};

struct RunningPool {
    spec: PoolSpec,
    pool: Arc<Pool>,
    stop: watch::Sender<bool>,
}

enum SiteTx {
    Http(watch::Sender<Arc<Site>>),
    Tcp(watch::Sender<Arc<TcpSite>>),
    Udp(watch::Sender<Arc<UdpSite>>),
}

enum SiteValue {
    Http(Arc<Site>),
    Tcp(Arc<TcpSite>),
    Udp(Arc<UdpSite>),
}

struct RunningListener {
    tx: SiteTx,
    stop: watch::Sender<bool>,
    view: ListenerView,
    local: SocketAddr,
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
}

type Key = (Mode, SocketAddr);

/// The load balancer as running now.
pub struct Running {
    pools: BTreeMap<String, RunningPool>,
    listeners: BTreeMap<Key, RunningListener>,
    /// Every connection counter ever started, so draining waits for
    /// listeners removed by a reload too.
    all_conns: Vec<Arc<TcpStats>>,
    upstream: Arc<Upstream>,
    view: watch::Sender<Arc<View>>,
    metrics: Option<SocketAddr>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .field("listeners", &self.listeners.keys().collect::<Vec<_>>())
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
            listeners: BTreeMap::new(),
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
            .iter()
            .map(|((mode, _), l)| {
                let m = match mode {
                    Mode::Http => "http",
                    Mode::Tcp => "tcp",
                    Mode::Udp => "udp",
                };
                (l.view.name.clone(), m, l.local)
            })
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
        let mut sites = Vec::new();
        for l in &config.listeners {
            sites.push(build_site(l, &pools)?);
        }
        // 3. New sockets.
        let mut bound = BTreeMap::new();
        for l in &config.listeners {
            let key = (l.mode, l.listen.0);
            if self.listeners.contains_key(&key) {
                continue;
            }
            let b = match l.mode {
                Mode::Udp => tokio::net::UdpSocket::bind(l.listen.0)
                    .await
                    .map(Bound::Udp),
                _ => tokio::net::TcpListener::bind(l.listen.0)
                    .await
                    .map(Bound::Tcp),
            }
            .map_err(|source| ApplyError::Bind {
                addr: l.listen.0,
                source,
            })?;
            bound.insert(key, b);
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
        let mut listeners = BTreeMap::new();
        for (l, site) in config.listeners.iter().zip(sites) {
            let key = (l.mode, l.listen.0);
            let name = l.display_name();
            if let Some(mut old) = self.listeners.remove(&key) {
                match (&old.tx, site) {
                    (SiteTx::Http(tx), SiteValue::Http(s)) => {
                        tx.send_replace(s);
                    }
                    (SiteTx::Tcp(tx), SiteValue::Tcp(s)) => {
                        tx.send_replace(s);
                    }
                    (SiteTx::Udp(tx), SiteValue::Udp(s)) => {
                        tx.send_replace(s);
                    }
                    _ => unreachable!("the key includes the mode"),
                }
                old.view.name = name;
                listeners.insert(key, old);
                continue;
            }
            let Some(b) = bound.remove(&key) else {
                continue;
            };
            let (stop, stop_rx) = watch::channel(false);
            let local = match &b {
                Bound::Tcp(t) => t.local_addr(),
                Bound::Udp(u) => u.local_addr(),
            }
            .unwrap_or(l.listen.0);
            let mut view = ListenerView {
                name,
                conns: None,
                http: None,
                udp: None,
            };
            let tx = match (b, site) {
                (Bound::Tcp(t), SiteValue::Http(s)) => {
                    let (tx, rx) = watch::channel(s);
                    let conns = Arc::new(TcpStats::default());
                    let stats = Arc::new(HttpStats::default());
                    self.all_conns.push(conns.clone());
                    view.conns = Some(conns.clone());
                    view.http = Some(stats.clone());
                    let shared = Arc::new(crate::http::Shared {
                        site: rx,
                        conns,
                        stats,
                        upstream: self.upstream.clone(),
                        raw: crate::http::upstream::RawPool::new(PoolLimits::default()),
                        ids: RequestIds::default(),
                    });
                    tokio::spawn(crate::http::serve(t, shared, stop_rx));
                    SiteTx::Http(tx)
                }
                (Bound::Tcp(t), SiteValue::Tcp(s)) => {
                    let (tx, rx) = watch::channel(s);
                    let conns = Arc::new(TcpStats::default());
                    self.all_conns.push(conns.clone());
                    view.conns = Some(conns.clone());
                    tokio::spawn(crate::tcp::serve(t, rx, conns, stop_rx));
                    SiteTx::Tcp(tx)
                }
                (Bound::Udp(u), SiteValue::Udp(s)) => {
                    let (tx, rx) = watch::channel(s);
                    let stats = Arc::new(UdpStats::default());
                    view.udp = Some(stats.clone());
                    tokio::spawn(crate::udp::serve(u, rx, stats, stop_rx));
                    SiteTx::Udp(tx)
                }
                _ => unreachable!("bound by mode"),
            };
            tracing::info!(listener = %view.name, addr = %local, "listener up");
            listeners.insert(
                key,
                RunningListener {
                    tx,
                    stop,
                    view,
                    local,
                },
            );
        }
        for (key, gone) in std::mem::replace(&mut self.listeners, listeners) {
            tracing::info!(listener = %gone.view.name, addr = %key.1, "listener removed; its connections finish");
            let _ = gone.stop.send(true);
        }
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
            listeners: self.listeners.values().map(|l| l.view.clone()).collect(),
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
        for l in self.listeners.values() {
            let _ = l.stop.send(true);
        }
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

fn build_site(
    l: &ListenerSpec,
    pools: &BTreeMap<String, (Arc<Pool>, bool)>,
) -> Result<SiteValue, ApplyError> {
    let name = l.display_name();
    let trusted = l.trust().map_err(|source| ApplyError::Trusted {
        listener: name.clone(),
        source,
    })?;
    let pool_of = |p: &str| {
        pools
            .get(p)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| ApplyError::NoPool {
                listener: name.clone(),
                pool: p.to_string(),
            })
    };
    let accept_proxy = l
        .accept_proxy
        .as_ref()
        .map_or(realip_net::ProxyMode::Off, |m| m.0);
    Ok(match l.mode {
        Mode::Http => {
            let mut routes = Vec::new();
            for r in &l.routes {
                routes.push(
                    Route::new(r.host.as_deref(), &r.path, pool_of(&r.pool)?).map_err(
                        |source| ApplyError::Route {
                            listener: name.clone(),
                            source,
                        },
                    )?,
                );
            }
            let tls = match &l.tls {
                None => None,
                Some(t) => Some(
                    realip_net::tls::acceptor(&realip_net::tls::TlsFiles {
                        cert: t.cert.clone(),
                        key: t.key.clone(),
                        cacert: None,
                    })
                    .map_err(|source| ApplyError::Tls {
                        listener: name.clone(),
                        source,
                    })?,
                ),
            };
            let d = HttpLimits::default();
            SiteValue::Http(Arc::new(Site {
                routes: Routes::new(routes),
                forwarding: Forwarding {
                    headers: l.header_set(),
                    xff: l.xff.as_ref().map_or_else(Default::default, |x| x.0),
                    underscores: l
                        .underscores
                        .as_ref()
                        .map_or_else(Default::default, |u| u.0),
                    resolver: realip_core::Resolver::new(trusted, l.strategies()),
                },
                tls,
                accept_proxy,
                upgrades: l.upgrade_tokens(),
                limits: HttpLimits {
                    max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
                    header_timeout: l.header_timeout.map_or(d.header_timeout, |t| t.0),
                    response_timeout: l.response_timeout.map_or(d.response_timeout, |t| t.0),
                    max_connections: l.max_connections.unwrap_or(d.max_connections),
                    retries: l.retries.unwrap_or(d.retries),
                },
            }))
        }
        Mode::Tcp => {
            let pool = pool_of(l.pool.as_deref().unwrap_or_default())?;
            let tlvs = l
                .proxy_v2
                .as_ref()
                .map_or_else(ProxyTlvs::default, |t| ProxyTlvs {
                    unique_id: t.unique_id,
                    crc32c: t.crc32c,
                    authority: t.authority.clone(),
                });
            SiteValue::Tcp(Arc::new(TcpSite {
                pool,
                config: TcpConfig {
                    client_ip: l.client_ip.as_ref().map_or(ClientIp::None, |c| c.0),
                    accept_proxy,
                    trusted,
                    connect_timeout: l.connect_timeout.map_or(Duration::from_secs(3), |t| t.0),
                    idle_timeout: l.idle_timeout.map_or(Duration::from_secs(300), |t| t.0),
                    tlvs,
                    max_connections: l.max_connections.unwrap_or(10_000),
                },
            }))
        }
        Mode::Udp => {
            let pool = pool_of(l.pool.as_deref().unwrap_or_default())?;
            SiteValue::Udp(Arc::new(UdpSite {
                pool,
                config: UdpConfig {
                    proxy_v2: l
                        .client_ip
                        .as_ref()
                        .is_some_and(|c| c.0 == ClientIp::ProxyV2),
                    idle_timeout: l.idle_timeout.map_or(Duration::from_secs(30), |t| t.0),
                    max_flows: l.max_connections.unwrap_or(65_536),
                },
            }))
        }
    })
}
