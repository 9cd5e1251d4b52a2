//! `realip lb --service NS/NAME`: the load balancer a cloud provider's
//! service controller would configure for that Service. The pool is
//! `realip_kube::service_lb::plan` of the watched Service and Nodes,
//! applied in place with [`Running::apply`] whenever it changes; the
//! status write is `realip_kube::lb_source::publish_status`'s. Here are
//! the loop, the log lines and the exit codes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use realip_kube::lb_source::{publish_status, LbSource};
use realip_kube::service_lb::{
    self, HealthPlan, Plan, Protocol, Publish, ServiceRef, Wanted, KUBE_PROXY_HEALTHZ_PORT,
};
use realip_kube::ApiAccess;
use realip_lb::config::{BackendSpec, Config, MethodField, PoolSpec};
use realip_lb::health::Check;
use realip_lb::server::Running;
use realip_lb::Backend;

use super::Args;

/// Pool changes are applied at most this often; the changes between are
/// one apply. A node flapping, or a rollout touching many Nodes at once,
/// then costs one reload, not one per event.
const COALESCE: Duration = Duration::from_millis(100);

/// Run `realip lb --service`.
pub fn run(args: &Args, target: ServiceRef) -> ExitCode {
    let Some(listen) = args.listen else {
        eprintln!("realip lb: --service needs --listen ADDR:PORT");
        return ExitCode::from(2);
    };
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let Some(access) = ApiAccess::choose(args.kubeconfig.clone(), args.master.clone(), in_cluster)
    else {
        eprintln!(
            "realip lb: --service needs the API server: give --kubeconfig FILE or --master URL; \
             in a pod, KUBERNETES_SERVICE_HOST selects in-cluster config"
        );
        return ExitCode::from(2);
    };
    let wanted = Wanted {
        port: args.service_port.clone(),
        listen_port: listen.port(),
        protocol: if args.mode == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        cluster_health_port: args.health_port.unwrap_or(KUBE_PROXY_HEALTHZ_PORT),
    };
    // Until the lists load the pool is empty, as for a missing Service.
    let empty = service_lb::plan(None, [], &wanted);
    let config = match checked(args, &empty) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realip lb: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::process::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("realip lb: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(args, target, access, wanted, config, listen))
}

/// The configuration for `plan`.
fn config_for(args: &Args, plan: &Plan) -> Result<Config, String> {
    let (check, port) = match plan.health {
        HealthPlan::KubeProxy { port } | HealthPlan::HealthCheckNodePort { port } => (
            Check::Http {
                path: service_lb::HEALTHZ_PATH.into(),
                expect: None,
            },
            Some(port),
        ),
        HealthPlan::NodePortConnect => (Check::Tcp, None),
    };
    let pool = PoolSpec {
        schedule: MethodField(args.schedule),
        backends: plan
            .backends
            .iter()
            .map(|b| {
                BackendSpec(Backend {
                    addr: b.addr,
                    weight: 1,
                })
            })
            .collect(),
        health: Some(super::health_spec(args, check, port)),
    };
    super::from_flags_with(args, pool)
}

/// [`config_for`], with the checks a file gets. The pool's backends come
/// later, from the API server, and may be none; the rest is checked with
/// a stand-in backend.
fn checked(args: &Args, plan: &Plan) -> Result<Config, String> {
    let config = config_for(args, plan)?;
    let mut probe = config.clone();
    for pool in probe.pools.values_mut() {
        pool.backends = vec![BackendSpec(Backend {
            addr: SocketAddr::from(([192, 0, 2, 1], 1)),
            weight: 1,
        })];
    }
    probe.checked().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn serve(
    args: &Args,
    target: ServiceRef,
    access: ApiAccess,
    wanted: Wanted,
    config: Config,
    listen: SocketAddr,
) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let conn = match realip_kube::connect(&access).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realip lb: {e}");
            return ExitCode::from(2);
        }
    };
    // Bound now, so a busy port fails at once. Until the first lists are
    // applied the pool is empty: TCP closes what it accepts, HTTP answers
    // 503, UDP drops; READY=1 waits for the lists.
    let mut running = match Running::start(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realip lb: {e}");
            return ExitCode::from(2);
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("realip lb: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let source = LbSource::start(&conn, &target);
    tracing::info!(
        server = %conn.server,
        service = %target,
        port = %wanted.port.as_ref().map_or_else(|| format!("the one on {}, else the only one", wanted.listen_port), ToString::to_string),
        "watching the API server for the Service and the Nodes"
    );
    let (publish_tx, publish_rx) = tokio::sync::watch::channel(Publish::Missing);
    let publish_ip = match (args.publish_status, listen.ip()) {
        (false, _) => None,
        (true, ip) if ip.is_unspecified() => {
            tracing::warn!(listen = %listen, "not writing status.loadBalancer: --listen is every address; give the one clients use");
            None
        }
        (true, ip) => Some(ip),
    };
    let publisher = publish_ip.map(|_| {
        tokio::spawn(publish_status(
            conn.clone(),
            target.clone(),
            publish_rx.clone(),
        ))
    });
    let mut applied: Option<Plan> = None;
    let mut seen = source.version();
    let mut last_apply: Option<tokio::time::Instant> = None;
    let mut announced = false;
    loop {
        tokio::select! {
            () = source.changed(seen) => {}
            _ = term.recv() => { tracing::info!("SIGTERM"); break; }
            _ = int.recv() => { tracing::info!("SIGINT"); break; }
        }
        if let Some(at) = last_apply {
            tokio::time::sleep_until(at + COALESCE).await;
        }
        seen = source.version();
        if !source.listed() {
            continue;
        }
        let service = source.service();
        let nodes = source.nodes();
        let plan = service_lb::plan(service.as_deref(), nodes.iter().map(|n| &**n), &wanted);
        if applied.as_ref() != Some(&plan) {
            let result = match config_for(args, &plan) {
                Ok(config) => running.apply(&config).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    log_change(&target, applied.as_ref(), &plan);
                    applied = Some(plan);
                    last_apply = Some(tokio::time::Instant::now());
                }
                // Nothing in a pool change can fail (no socket is bound,
                // no file read); if it did, the running pool stays.
                Err(e) => {
                    tracing::error!(service = %target, error = %e, "applying the Service's pool failed; the running one stays")
                }
            }
        }
        if !announced && applied.is_some() {
            super::announce(&running);
            announced = true;
        }
        if let Some(ip) = publish_ip {
            let now = service_lb::publish(service.as_deref(), ip);
            publish_tx.send_if_modified(|p| {
                let new = *p != now;
                *p = now;
                new
            });
        }
    }
    if let Some(p) = publisher {
        p.abort();
    }
    drop(source);
    let left = running.stop(args.grace).await;
    if left > 0 {
        tracing::warn!(
            open = left,
            grace = ?args.grace,
            "closing connections still open after the grace time"
        );
    }
    ExitCode::SUCCESS
}

/// One line per applied change, saying what changed; a warning when the
/// Service leaves the pool empty, and which nodes are left out.
fn log_change(target: &ServiceRef, old: Option<&Plan>, new: &Plan) {
    let c = service_lb::change(old, new);
    let port = new.port.as_ref().map_or("-".to_string(), |p| {
        let name = if p.name.is_empty() { "-" } else { &p.name };
        format!("{name}/{} nodePort {}", p.port, p.node_port)
    });
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(" ")
        }
    };
    let pool_of = |p: &Plan| (p.port.clone(), p.backends.clone(), p.health);
    // When only the nodes left out, or the reason, changed, the pool did not.
    if old.map(pool_of) != Some(pool_of(new)) {
        tracing::info!(
            service = %target,
            port = %port,
            backends = new.backends.len(),
            added = %list(&c.added),
            removed = %list(&c.removed),
            health = %new.health,
            health_changed = c.health.is_some(),
            "pool updated"
        );
    }
    if new.problem != old.and_then(|o| o.problem.clone()) {
        match &new.problem {
            Some(p) => tracing::warn!(service = %target, problem = %p, "no backends"),
            None => tracing::info!(service = %target, "the Service's nodes are backends again"),
        }
    }
    if old.map(|o| &o.excluded) != Some(&new.excluded) && !new.excluded.is_empty() {
        let left_out: Vec<String> = new
            .excluded
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        tracing::info!(service = %target, nodes = %left_out.join(", "), "nodes left out of the pool");
    }
}
