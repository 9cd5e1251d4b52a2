//! Kubernetes objects as JSON values (pure): a scenario's YAML documents,
//! and the values a scenario may name instead of writing them, because
//! the apiserver allocates them: `{NS/NAME.clusterIP}`,
//! `{NS/NAME.nodePort}` (the first port's), `{NS/NAME.nodePort.PORT}` (the
//! port named PORT) and `{NS/NAME.healthCheckNodePort}`.
//!
//! From files, the values come from the Services as written (a Service
//! that leaves one out has none, and the run stops there); on the API,
//! from the Services as the apiserver returns them after the apply.

use serde_json::Value;

/// The objects text is not YAML documents, or a placeholder is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The objects are not YAML documents.
    #[error("objects: {0}")]
    Yaml(String),
    /// A placeholder is not one of the forms.
    #[error(
        "{0:?} is not {{NS/NAME.clusterIP}}, {{NS/NAME.nodePort}}, {{NS/NAME.nodePort.PORT}} or {{NS/NAME.healthCheckNodePort}}"
    )]
    Form(String),
    /// No such Service.
    #[error("{0:?}: the scenario has no Service {1}")]
    NoService(String, String),
    /// The Service has no such value.
    #[error("{0:?}: Service {1} has none{2}")]
    NoValue(String, String, &'static str),
}

/// The field a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// spec.clusterIP.
    ClusterIp,
    /// spec.ports[].nodePort: the named port's, or the first's.
    NodePort(Option<String>),
    /// spec.healthCheckNodePort.
    HealthCheckNodePort,
}

/// `{NS/NAME.FIELD}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The text, braces included.
    pub text: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// What of it.
    pub field: Field,
}

/// The objects, one JSON value per YAML document (empty ones skipped).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| ManifestError::Yaml(e.to_string()))?;
        match v {
            Value::Null => {}
            Value::Object(_) if v["kind"].is_string() => out.push(v),
            other => {
                return Err(ManifestError::Yaml(format!(
                    "a document is not an object with a kind: {}",
                    other.to_string().chars().take(80).collect::<String>()
                )))
            }
        }
    }
    Ok(out)
}

/// The placeholders in `text`. A `{...}` without a `/`, or with anything
/// but letters, digits and `-._/` in it, is not one (the programs'
/// `{pod}`, a YAML flow mapping in an LB configuration) and is left alone.
pub fn placeholders(text: &str) -> Result<Vec<Placeholder>, ManifestError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let Some(len) = rest[i..].find('}') else {
            break;
        };
        let inner = &rest[i + 1..i + len];
        let whole = &rest[i..=i + len];
        rest = &rest[i + len + 1..];
        let name_like = inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
        if !name_like || !inner.contains('/') {
            continue;
        }
        let bad = || ManifestError::Form(whole.to_string());
        let (namespace, after) = inner.split_once('/').ok_or_else(bad)?;
        let (name, field) = after.split_once('.').ok_or_else(bad)?;
        let field = match field.split_once('.') {
            None if field == "clusterIP" => Field::ClusterIp,
            None if field == "nodePort" => Field::NodePort(None),
            None if field == "healthCheckNodePort" => Field::HealthCheckNodePort,
            Some(("nodePort", port)) if !port.is_empty() => Field::NodePort(Some(port.into())),
            _ => return Err(bad()),
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(bad());
        }
        out.push(Placeholder {
            text: whole.to_string(),
            namespace: namespace.into(),
            name: name.into(),
            field,
        });
    }
    Ok(out)
}

/// A placeholder's value among `services` (Service objects).
pub fn lookup(services: &[Value], p: &Placeholder) -> Result<String, ManifestError> {
    let who = format!("{}/{}", p.namespace, p.name);
    let svc = services
        .iter()
        .find(|s| {
            s["kind"] == "Service"
                && s["metadata"]["name"] == p.name.as_str()
                && s["metadata"]["namespace"].as_str().unwrap_or("default") == p.namespace
        })
        .ok_or_else(|| ManifestError::NoService(p.text.clone(), who.clone()))?;
    let none = |what| ManifestError::NoValue(p.text.clone(), who.clone(), what);
    let spec = &svc["spec"];
    match &p.field {
        Field::ClusterIp => spec["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .map(str::to_string)
            .ok_or_else(|| none("")),
        Field::HealthCheckNodePort => spec["healthCheckNodePort"]
            .as_u64()
            .map(|p| p.to_string())
            .ok_or_else(|| none("")),
        Field::NodePort(port) => {
            let ports = spec["ports"].as_array().cloned().unwrap_or_default();
            let chosen = match port {
                None => ports.first(),
                Some(name) => ports.iter().find(|x| x["name"] == name.as_str()),
            };
            match chosen {
                None => Err(none(" such port")),
                Some(x) => x["nodePort"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .ok_or_else(|| none("")),
            }
        }
    }
}

/// `text` with every placeholder replaced by its value among `services`.
pub fn substitute(text: &str, services: &[Value]) -> Result<String, ManifestError> {
    let mut out = text.to_string();
    for p in placeholders(text)? {
        out = out.replace(&p.text, &lookup(services, &p)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn services() -> Vec<Value> {
        vec![
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"clusterIP": "10.96.4.2", "healthCheckNodePort": 31999,
                     "ports": [{"name": "http", "nodePort": 30111}, {"name": "udp", "nodePort": 30222}]}}),
        ]
    }

    #[test]
    fn placeholders_name_a_services_allocation() {
        let s = services();
        assert_eq!(
            substitute("10.0.0.11:{demo/web.nodePort}", &s).unwrap(),
            "10.0.0.11:30111"
        );
        assert_eq!(
            substitute(
                "{demo/web.clusterIP}:80 {demo/web.nodePort.udp} {demo/web.healthCheckNodePort}",
                &s
            )
            .unwrap(),
            "10.96.4.2:80 30222 31999"
        );
        // Not ours: left for whoever reads it.
        for text in ["{pod}:8080", "health: {check: \"http:/healthz\", port: 1}"] {
            assert_eq!(substitute(text, &s).unwrap(), text);
        }
    }

    #[test]
    fn what_cannot_be_found_says_so() {
        let s = services();
        for (text, want) in [
            ("{demo/web.port}", "is not {NS/NAME.clusterIP}"),
            ("{demo/web}", "is not"),
            (
                "{demo/gone.clusterIP}",
                "the scenario has no Service demo/gone",
            ),
            (
                "{demo/web.nodePort.tcp}",
                "Service demo/web has none such port",
            ),
        ] {
            let e = substitute(text, &s).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let written = vec![
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
                                  "spec": {"ports": [{"name": "http"}]}}),
        ];
        let e = substitute("{demo/web.nodePort}", &written).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"{demo/web.nodePort}\": Service demo/web has none"
        );
    }
}
