//! How the API server is reached, chosen as kube-proxy chooses it
//! (cmd/kube-proxy `createClient`): a kubeconfig, with `--master`
//! overriding its server URL; `--master` alone, without credentials; or,
//! when neither is given, the pod's service account (in-cluster).
//!
//! A kube-proxy replacement usually cannot use in-cluster config: it
//! reaches the API server through the `kubernetes` Service's ClusterIP,
//! which is what the proxy itself programs. So a DaemonSet gives it the
//! API server's real address with `--master` or a kubeconfig.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// Where the API server is and who we are to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAccess {
    /// A kubeconfig file's current context; `master`, when given,
    /// replaces its server URL and keeps its credentials and CA.
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// `--master`.
        master: Option<String>,
    },
    /// This URL and no credentials (`--master` without a kubeconfig): an
    /// `http://` port, or an `https://` one whose certificate the system
    /// roots verify.
    Master(String),
    /// The pod's service account: `KUBERNETES_SERVICE_HOST` and `_PORT`,
    /// and the token and CA mounted under
    /// /var/run/secrets/kubernetes.io/serviceaccount.
    InCluster,
}

impl ApiAccess {
    /// The access the command line asks for, or `None` when it names
    /// none: a kubeconfig (with `master` overriding its server), `master`
    /// alone, else in-cluster when `in_cluster_env` (the
    /// `KUBERNETES_SERVICE_HOST` variable is set).
    pub fn choose(
        kubeconfig: Option<PathBuf>,
        master: Option<String>,
        in_cluster_env: bool,
    ) -> Option<ApiAccess> {
        match (kubeconfig, master) {
            (Some(path), master) => Some(ApiAccess::Kubeconfig { path, master }),
            (None, Some(url)) => Some(ApiAccess::Master(url)),
            (None, None) if in_cluster_env => Some(ApiAccess::InCluster),
            (None, None) => None,
        }
    }
}

/// Why no client could be made. These are startup errors: nothing has
/// been tried against the API server yet.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {}: {}", path.display(), kubeconfig_reason(source))]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KubeconfigError,
    },
    /// `--master` is not a URL.
    #[error("--master {url:?} is not a URL: {source}")]
    Master {
        /// What was given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// In-cluster config was chosen but the pod's environment lacks it.
    #[error(
        "in-cluster config (KUBERNETES_SERVICE_HOST/PORT and the service account under \
         /var/run/secrets/kubernetes.io/serviceaccount): {0}; outside a pod, give --kubeconfig or --master"
    )]
    InCluster(#[source] kube::config::InClusterError),
    /// The client for the configuration could not be built (TLS setup,
    /// credentials).
    #[error("API client for {server}: {source}")]
    Client {
        /// The API server's URL.
        server: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// kube's read error repeats the path the message already names.
fn kubeconfig_reason(e: &KubeconfigError) -> String {
    match e {
        KubeconfigError::ReadConfig(io, _) => io.to_string(),
        other => other.to_string(),
    }
}

/// A client for the API server, and its URL for every message about it.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: kube::Client,
    /// The API server's URL, as the messages name it.
    pub server: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The kube-rs configuration for `access`. Nothing is sent yet.
pub async fn client_config(access: &ApiAccess) -> Result<kube::Config, ConfigError> {
    let parse = |url: &str| {
        url.parse::<http::Uri>()
            .map_err(|source| ConfigError::Master {
                url: url.to_string(),
                source,
            })
    };
    match access {
        ApiAccess::Kubeconfig { path, master } => {
            let wrap = |source| ConfigError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            let mut config =
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(wrap)?;
            if let Some(url) = master {
                config.cluster_url = parse(url)?;
            }
            Ok(config)
        }
        ApiAccess::Master(url) => Ok(kube::Config::new(parse(url)?)),
        ApiAccess::InCluster => kube::Config::incluster().map_err(ConfigError::InCluster),
    }
}

/// A client for `access`. Must be called within a tokio runtime (the
/// client's request queue is a task). Connects lazily: an unreachable
/// server shows in the watches' errors, not here.
pub async fn connect(access: &ApiAccess) -> Result<Connection, ConfigError> {
    let config = client_config(access).await?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|source| ConfigError::Client {
        server: server.clone(),
        source,
    })?;
    Ok(Connection { client, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_follows_kube_proxy() {
        let kc = Some(PathBuf::from("/k"));
        let m = Some("https://10.0.0.1:6443".to_string());
        assert_eq!(
            ApiAccess::choose(kc.clone(), m.clone(), true),
            Some(ApiAccess::Kubeconfig {
                path: "/k".into(),
                master: m.clone()
            })
        );
        assert_eq!(
            ApiAccess::choose(None, m.clone(), true),
            Some(ApiAccess::Master("https://10.0.0.1:6443".into()))
        );
        assert_eq!(
            ApiAccess::choose(None, None, true),
            Some(ApiAccess::InCluster)
        );
        assert_eq!(ApiAccess::choose(None, None, false), None);
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn an_unreadable_kubeconfig_names_the_file() {
        let access = ApiAccess::Kubeconfig {
            path: "/nonexistent/realip-kubeconfig".into(),
            master: None,
        };
        let e = rt().block_on(client_config(&access)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "kubeconfig /nonexistent/realip-kubeconfig: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn master_overrides_the_kubeconfig_server_and_alone_has_no_credentials() {
        let dir = std::env::temp_dir().join(format!("realip-kube-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n\
             users:\n- name: u\n  user: {token: secret-token}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n\
             current-context: x\n",
        )
        .unwrap();
        let rt = rt();
        let plain = rt
            .block_on(client_config(&ApiAccess::Kubeconfig {
                path: path.clone(),
                master: None,
            }))
            .unwrap();
        assert_eq!(plain.cluster_url.to_string(), "https://127.0.0.1:1/");
        let overridden = rt
            .block_on(client_config(&ApiAccess::Kubeconfig {
                path: path.clone(),
                master: Some("https://127.0.0.1:2".into()),
            }))
            .unwrap();
        assert_eq!(overridden.cluster_url.to_string(), "https://127.0.0.1:2/");
        assert!(overridden.auth_info.token.is_some(), "credentials kept");
        let alone = rt
            .block_on(client_config(&ApiAccess::Master(
                "http://127.0.0.1:3".into(),
            )))
            .unwrap();
        assert_eq!(alone.cluster_url.to_string(), "http://127.0.0.1:3/");
        assert!(alone.auth_info.token.is_none() && alone.auth_info.client_certificate.is_none());
        let bad = rt
            .block_on(client_config(&ApiAccess::Master("not a url".into())))
            .unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("--master \"not a url\" is not a URL"),
            "{bad}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
