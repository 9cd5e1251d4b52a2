//! What this node's healthCheckNodePort servers must answer: one per
//! `externalTrafficPolicy: Local` LoadBalancer Service, with its count of
//! ready endpoints here.

use crate::model::{Model, ServiceKey};

/// What a healthCheckNodePort server must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service.
    pub service: ServiceKey,
    /// The port to listen on.
    pub port: u16,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
}

/// Health checks this node must serve.
pub fn health_checks(model: &Model, node: &str) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    for svc in model.services.values() {
        let Some(port) = svc.health_check_node_port else {
            continue;
        };
        let local = model
            .endpoints
            .get(&svc.key)
            .map(|eps| {
                eps.iter()
                    .filter(|e| e.ready && e.node.as_deref() == Some(node))
                    .count()
            })
            .unwrap_or(0);
        out.push(HealthCheck {
            service: svc.key.clone(),
            port,
            local_endpoints: local,
        });
    }
    out
}
