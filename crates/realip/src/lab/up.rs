//! `realip lab up`: a scenario's cluster kept running until Ctrl-C, for a
//! person to explore, and the commands to try on it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use realip_lab::run::{remove_run_dir, run_dir, AgentObjects, Cluster, Options, Proxy};
use realip_lab::scenario::{Scenario, Send};
use realip_lab::topology::{node_ip, node_pod_gateway, pod_ip, Role, CLIENT_IP, CONTROL_IP};

/// How often, with --api, the agents' files are brought in step with the
/// apiserver (a `kubectl apply` shows up in the kernel within about this
/// plus the agents' poll).
const FOLLOW: Duration = Duration::from_secs(1);

/// A scenario without Services: whoami in every pod of `pods` (`1,0`).
pub fn bare(pods: &str) -> Result<Scenario, ExitCode> {
    let counts: Result<Vec<usize>, _> =
        pods.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match counts {
        Ok(c) if !c.is_empty() => Ok(Scenario {
            name: "pods".into(),
            title: format!("whoami pods on {} nodes", c.len()),
            seed: None,
            pods: c,
            whoami: Vec::new(),
            objects: String::new(),
            router: None,
            programs: Default::default(),
            probes: Vec::new(),
            steps: Vec::new(),
        }),
        _ => {
            eprintln!("realip lab: --pods {pods:?}: expected numbers like 1,0");
            Err(ExitCode::from(2))
        }
    }
}

/// Bring `s` up and keep it until a signal (the lab's handler tears it
/// down and exits 128 + the signal).
pub fn run(s: &Scenario, exe: &Path, options: &Options) -> ExitCode {
    let dir = match run_dir(&format!("up-{}", s.name)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("realip lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cluster = match Cluster::up(s, exe, &dir, options) {
        Ok(c) => c,
        Err(e) => {
            if realip_lab::topology::stopping() {
                park();
            }
            eprintln!("realip lab: bringing {} up: {e}", s.name);
            remove_run_dir(&dir);
            return ExitCode::FAILURE;
        }
    };
    crate::logging::print_out(&describe(cluster.scenario(), &cluster, exe, &dir));
    if cluster.control().is_some() {
        cluster.follow(FOLLOW, realip_lab::topology::stopping);
    }
    park()
}

/// Wait for the signal handler, which exits.
fn park() -> ! {
    loop {
        std::thread::park();
    }
}

/// What runs where, and the commands to try. The last line starts with
/// `ready`: everything before it is printed by then.
fn describe(s: &Scenario, cluster: &Cluster, exe: &Path, dir: &Path) -> String {
    let api = cluster.control().is_some();
    let agents = api || !s.objects.trim().is_empty();
    let mut text = format!(
        "realip lab up: {} ({}){}\n",
        s.name,
        s.title,
        if api { ", on a real control plane" } else { "" }
    );
    text.push_str("namespaces:\n");
    for h in &cluster.lab().plan().hosts {
        let what = match h.role {
            Role::Fabric => "fabric (bridge br0)".to_string(),
            Role::Router => match &s.router {
                Some(_) => "router 10.0.0.1 | 203.0.113.1: realip lb (the cloud LB)".to_string(),
                None => "router 10.0.0.1 | 203.0.113.1".to_string(),
            },
            Role::Client => format!("client {CLIENT_IP}"),
            Role::Control => format!(
                "control {CONTROL_IP}: kube-apiserver :6443, etcd and kube-controller-manager on its loopback"
            ),
            Role::Node(n) => {
                let gw = node_pod_gateway(n).octets();
                format!(
                    "node-{n} {} (pods {}.{}.{}.0/24 via cbr0){}",
                    node_ip(n),
                    gw[0],
                    gw[1],
                    gw[2],
                    match (agents, cluster.proxy(), cluster.agents()) {
                        (false, _, _) => String::new(),
                        (true, Proxy::KubeProxy(m), _) => {
                            format!(": kube-proxy ({}), watching the apiserver", m.as_str())
                        }
                        (true, _, Some(AgentObjects::Watch)) => {
                            ": realip node, watching the apiserver".into()
                        }
                        (true, _, _) => ": realip node".into(),
                    }
                )
            }
            Role::Pod(n, j) if cluster.free_slot(n, j) => format!(
                "pod {}: a free slot for a Deployment's Pod (the lab places and starts it)",
                pod_ip(n, j)
            ),
            Role::Pod(n, j) => {
                let program = s.pod_program(n, j);
                format!(
                    "pod {}: realip {}",
                    pod_ip(n, j),
                    program.first().map(String::as_str).unwrap_or("")
                )
            }
        };
        text.push_str(&format!("  {}  {what}\n", h.netns));
    }
    let ns = |r: &Role| cluster.netns(r).unwrap_or_default();
    let mut try_lines = Vec::new();
    if let Some(control) = cluster.control() {
        let kubectl = control.kubectl();
        text.push_str(&format!(
            "kubeconfig: {} (reach it from inside the lab: ip netns exec {} ...)\n",
            kubectl.kubeconfig().display(),
            ns(&Role::Control)
        ));
        text.push_str(&format!("logs: {}/*.log\n", control.dir().display()));
        try_lines.push(format!("alias k='{}'", kubectl.command_line()));
        try_lines.push("k get svc -A -o wide".into());
        try_lines.push("k get endpointslices -A".into());
        try_lines.push("k get pods,nodes -A -o wide".into());
        // A live scenario's steps, for a person to take one by one.
        for st in &s.steps {
            for args in &st.kubectl {
                let quoted: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
                try_lines.push(format!("k {}    # {}", quoted.join(" "), st.name));
            }
        }
    }
    if let Some(url) = curl_target(s) {
        try_lines.push(format!("ip netns exec {} curl -s {url}", ns(&Role::Client)));
    }
    if agents {
        try_lines.push(format!(
            "ip netns exec {} nft list table ip realip",
            ns(&Role::Node(1))
        ));
        let plan = |objects: &Path| {
            format!(
                "{} node plan --objects {} --node node-1",
                exe.display(),
                objects.display()
            )
        };
        match (cluster.agents(), cluster.objects_files().first()) {
            // The agents read no file: take the apiserver's objects now.
            (Some(AgentObjects::Watch), _) => {
                let objects = dir.join("objects.yaml");
                try_lines.push(format!(
                    "k get svc,endpointslices,nodes -A -o yaml > {} && {}",
                    objects.display(),
                    plan(&objects)
                ));
            }
            (_, Some(file)) => try_lines.push(plan(file)),
            (_, None) => try_lines.push(plan(&dir.join("objects.yaml"))),
        }
    }
    text.push_str("try:\n");
    for l in try_lines {
        text.push_str(&format!("  {l}\n"));
    }
    text.push_str("ready: Ctrl-C tears the lab down\n");
    text
}

/// Where a curl from the client shows the scenario's path: its first
/// HTTP probe from the client, else the first pod's whoami.
fn curl_target(s: &Scenario) -> Option<String> {
    if let Some(p) = s
        .probes
        .iter()
        .find(|p| p.from == "client" && p.send == Send::Http)
    {
        return Some(format!("http://{}{}", p.to, p.path));
    }
    let (i, _) = s.pods.iter().enumerate().find(|(_, &c)| c > 0)?;
    let n = i + 1;
    let whoami = s.pod_program(n, 0).first().is_some_and(|p| p == "whoami");
    whoami.then(|| format!("http://{}:8080/api", pod_ip(n, 0)))
}

/// `word` as one shell word.
fn shell_word(word: &str) -> String {
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,@%+".contains(&b));
    if plain && !word.is_empty() {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
