//! The control plane's certificates, made per run with openssl: a CA, the
//! apiserver's serving certificate, client certificates (the lab's admin,
//! the controller-manager, one per node) and the service-account key pair.
//! EC P-256 throughout: quick to make, and every component takes it.
//!
//! They live in the run's directory and go with it; nothing outside the
//! lab trusts this CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::topology::CONTROL_IP;

use super::error::K8sError;

/// The first address of the service range: the `kubernetes` Service's
/// ClusterIP, which in-cluster clients dial, so the serving certificate
/// names it.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// How long the certificates are valid: a `lab up` may run for days.
const DAYS: &str = "30";

/// The router LB's user (see [`Identity::lb`]).
pub const LB_USER: &str = "realip-lb";

/// A client identity: the certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The file stem (`admin` -> admin.crt, admin.key, admin.kubeconfig).
    pub file: String,
    /// The user (CN).
    pub user: String,
    /// The groups (O), which RBAC binds.
    pub groups: Vec<String>,
}

impl Identity {
    /// The lab's own: system:masters, as kubeadm's admin.conf.
    pub fn admin() -> Identity {
        Identity {
            file: "admin".into(),
            user: "realip-lab-admin".into(),
            groups: vec!["system:masters".into()],
        }
    }

    /// The controller-manager: the user RBAC's bootstrap policy binds.
    pub fn controller_manager() -> Identity {
        Identity {
            file: "kube-controller-manager".into(),
            user: "system:kube-controller-manager".into(),
            groups: Vec::new(),
        }
    }

    /// Node N's agent: `system:kube-proxy`, the user RBAC's bootstrap
    /// policy binds to system:node-proxier (list and watch on Services,
    /// EndpointSlices and Nodes); its own key pair per node.
    pub fn kube_proxy(n: usize) -> Identity {
        Identity {
            file: format!("kube-proxy-node-{n}"),
            user: "system:kube-proxy".into(),
            groups: Vec::new(),
        }
    }

    /// The cloud LB on the router (`realip lb --service`): user
    /// `realip-lb`, which the lab's RBAC lets read Services and Nodes and
    /// write a Service's status, as a cloud controller's service
    /// controller may.
    pub fn lb() -> Identity {
        Identity {
            file: "realip-lb".into(),
            user: LB_USER.into(),
            groups: Vec::new(),
        }
    }

    /// `/O=group/.../CN=user`, openssl's -subj form.
    fn subject(&self) -> String {
        let mut s = String::new();
        for g in &self.groups {
            s.push_str(&format!("/O={g}"));
        }
        s.push_str(&format!("/CN={}", self.user));
        s
    }
}

/// The certificates of one run, in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Make the CA, the apiserver's certificate and the service-account
    /// key pair in `dir` (created).
    pub fn generate(dir: &Path) -> Result<Pki, K8sError> {
        std::fs::create_dir_all(dir).map_err(|source| K8sError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.openssl(
            "req",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                DAYS,
                "-subj",
                "/CN=realip-lab-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        )?;
        let sans = format!(
            "IP:{CONTROL_IP},IP:127.0.0.1,IP:{KUBERNETES_SERVICE_IP},DNS:localhost,DNS:kubernetes,\
             DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
        );
        pki.sign(
            "apiserver",
            "/CN=kube-apiserver",
            &format!(
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={sans}\n"
            ),
        )?;
        pki.openssl(
            "genpkey",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "sa.key",
            ],
        )?;
        pki.openssl(
            "pkey",
            &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        )?;
        Ok(pki)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the PKI.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client certificate for `who`, and a kubeconfig that uses it to
    /// reach `server`; returns the kubeconfig's path.
    pub fn client(&self, who: &Identity, server: &str) -> Result<PathBuf, K8sError> {
        self.sign(
            &who.file,
            &who.subject(),
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )?;
        let path = self.file(&format!("{}.kubeconfig", who.file));
        let text = kubeconfig(
            server,
            &self.file("ca.crt"),
            &self.file(&format!("{}.crt", who.file)),
            &self.file(&format!("{}.key", who.file)),
            &who.user,
        );
        std::fs::write(&path, text).map_err(|source| K8sError::File {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// A key and a CA-signed certificate: NAME.key, NAME.crt.
    fn sign(&self, name: &str, subject: &str, extensions: &str) -> Result<(), K8sError> {
        let (key, csr, ext, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
            format!("{name}.crt"),
        );
        std::fs::write(self.file(&ext), extensions).map_err(|source| K8sError::File {
            path: self.file(&ext),
            source,
        })?;
        self.openssl(
            "req",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        )?;
        self.openssl(
            "x509",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                DAYS,
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        )
    }

    fn openssl(&self, step: &str, args: &[&str]) -> Result<(), K8sError> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| K8sError::Openssl {
                step: step.to_string(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(K8sError::Openssl {
                step: step.to_string(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// A kubeconfig with one cluster, one user and one context, all "lab".
pub fn kubeconfig(server: &str, ca: &Path, cert: &Path, key: &Path, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: \"{server}\"\n    \
         certificate-authority: \"{}\"\nusers:\n- name: \"{user}\"\n  user:\n    client-certificate: \"{}\"\n    \
         client-key: \"{}\"\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: \"{user}\"}}\n\
         current-context: lab\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_put_groups_first() {
        assert_eq!(
            Identity::admin().subject(),
            "/O=system:masters/CN=realip-lab-admin"
        );
        assert_eq!(
            Identity::controller_manager().subject(),
            "/CN=system:kube-controller-manager"
        );
    }

    #[test]
    fn a_kubeconfig_names_its_files() {
        let k = kubeconfig(
            "https://10.0.0.2:6443",
            Path::new("/d/ca.crt"),
            Path::new("/d/a.crt"),
            Path::new("/d/a.key"),
            "system:node:node-1",
        );
        assert!(k.contains("server: \"https://10.0.0.2:6443\""), "{k}");
        assert!(k.contains("certificate-authority: \"/d/ca.crt\""), "{k}");
        assert!(k.contains("client-key: \"/d/a.key\""), "{k}");
        assert!(k.contains("user: \"system:node:node-1\""), "{k}");
        // It is YAML a parser reads back.
        let v: serde_json::Value = serde_yaml_ng::from_str(&k).unwrap();
        assert_eq!(v["current-context"], "lab");
        assert_eq!(v["contexts"][0]["context"]["user"], "system:node:node-1");
    }
}
