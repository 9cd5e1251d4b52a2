//! Building a plan on the real kernel, and the guarantee that goes with
//! it: whatever this process made (namespaces, processes, directories) is
//! removed on drop, on error and on SIGINT, SIGTERM or SIGHUP.

use std::process::Command;
use std::sync::{Mutex, Once};

use super::hosts::{unique_id, Plan, Role, Step, PREFIX};
use super::plan::PlanError;

/// Why the lab could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// No root, no `ip`, or no namespace support.
    #[error("network namespaces are not available here ({0}); the lab needs root and iproute2")]
    Unsupported(String),
    /// A step failed.
    #[error("`{step}` failed: {stderr}")]
    Step {
        /// The step.
        step: String,
        /// What `ip` said.
        stderr: String,
    },
    /// The plan was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Whether this process can create network namespaces (root and iproute2).
pub fn check_support() -> Result<(), LabError> {
    let probe = Command::new("ip").args(["netns", "list"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(LabError::Unsupported(
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            ))
        }
        Err(e) => return Err(LabError::Unsupported(format!("cannot run ip: {e}"))),
    }
    // Creating one is the only real test of permission.
    let name = format!("{PREFIX}-probe-{}", unique_id());
    let add = Command::new("ip").args(["netns", "add", &name]).output();
    match add {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            Ok(())
        }
        Ok(o) => Err(LabError::Unsupported(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )),
        Err(e) => Err(LabError::Unsupported(e.to_string())),
    }
}

fn run(step: &Step) -> Result<(), LabError> {
    let out = match step {
        Step::AddNetns(n) => Command::new("ip").args(["netns", "add", n]).output(),
        Step::Ip(n, args) => Command::new("ip").arg("-n").arg(n).args(args).output(),
        Step::Forwarding(n) => Command::new("ip")
            .args([
                "netns",
                "exec",
                n,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
            ])
            .output(),
        Step::NoDad(n) => Command::new("ip")
            .args([
                "netns",
                "exec",
                n,
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad",
            ])
            .output(),
    };
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(LabError::Step {
            step: step.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }),
        Err(e) => Err(LabError::Step {
            step: step.to_string(),
            stderr: e.to_string(),
        }),
    }
}

/// Namespaces alive in this process, for the signal handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SIGNALS: Once = Once::new();

fn register(name: &str) {
    if let Ok(mut live) = LIVE.lock() {
        live.push(name.to_string());
    }
}

fn unregister(name: &str) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|n| n != name);
    }
}

/// Processes started in the lab, stopped by the signal handler before the
/// namespaces go (a namespace outlives its deletion while a process is in it).
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Set by the signal handler: no new namespace or process is started.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal is tearing the lab down (start nothing new).
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Record a process started inside the lab, for Ctrl-C cleanup.
pub fn register_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.push(pid);
    }
}

/// Forget a process that has been stopped.
pub fn unregister_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.retain(|&x| x != pid);
    }
}

/// Directories a run keeps its files in (readiness sockets, objects, and
/// with `--api` the etcd data, the CA's key and the kubeconfigs), removed
/// by the signal handler once the processes using them are stopped: a
/// cluster's private keys are not left in /tmp by Ctrl-C.
static DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// Record a run's directory, for Ctrl-C cleanup.
pub fn register_dir(dir: &std::path::Path) {
    if let Ok(mut d) = DIRS.lock() {
        d.push(dir.to_path_buf());
    }
}

/// Forget a directory that has been removed.
pub fn unregister_dir(dir: &std::path::Path) {
    if let Ok(mut d) = DIRS.lock() {
        d.retain(|x| x != dir);
    }
}

/// On SIGINT, SIGTERM or SIGHUP, stop the processes started in the lab,
/// delete every namespace this process made and the run directories, then
/// exit with 128 + the signal: Ctrl-C never leaves a lab behind.
/// Installed once, by the first [`Lab::build`].
pub(crate) fn ensure_signal_cleanup() {
    SIGNALS.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
                // Several passes: a namespace or process another thread was
                // creating at the moment of the signal appears after the
                // first snapshot (and no new one is started once STOPPING
                // is set).
                for _ in 0..5 {
                    let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
                    for pid in pids {
                        if let Ok(pid) = i32::try_from(pid) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    let names = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
                    for n in names.iter().rev() {
                        let gone = Command::new("ip")
                            .args(["netns", "del", n])
                            .output()
                            .is_ok_and(|o| o.status.success());
                        if gone {
                            unregister(n);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                // Last: the processes that wrote here are gone.
                let dirs = DIRS.lock().map(|d| d.clone()).unwrap_or_default();
                for d in dirs {
                    let _ = std::fs::remove_dir_all(&d);
                }
                std::process::exit(128 + sig);
            }
        });
    });
}

/// A built lab. Dropping it deletes every namespace it made.
#[derive(Debug)]
pub struct Lab {
    plan: Plan,
    made: Vec<String>,
}

impl Lab {
    /// Build `plan`. On any failure, what was made is torn down before the
    /// error returns.
    pub fn build(plan: Plan) -> Result<Lab, LabError> {
        ensure_signal_cleanup();
        let mut lab = Lab {
            plan,
            made: Vec::new(),
        };
        let steps = lab.plan.steps.clone();
        for step in &steps {
            if stopping() {
                return Err(LabError::Unsupported("interrupted".into()));
            }
            // Registered before it exists: a signal mid-step still cleans it.
            if let Step::AddNetns(n) = step {
                register(n);
            }
            let r = run(step);
            if let Step::AddNetns(n) = step {
                if r.is_ok() {
                    lab.made.push(n.clone());
                } else {
                    unregister(n);
                }
            }
            r?; // `lab` drops on `?`, removing what exists so far
        }
        Ok(lab)
    }

    /// The plan it was built from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Run a command inside a host's namespace.
    pub fn exec(&self, role: &Role, argv: &[&str]) -> std::io::Result<std::process::Output> {
        let ns = self.plan.netns(role).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no host {role:?}"))
        })?;
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
    }

    /// Delete everything now (also done on drop).
    pub fn teardown(&mut self) {
        for n in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &n]).output();
            unregister(&n);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Delete every namespace whose name starts with `realip-` (leftovers of
/// runs that were killed). Returns the names removed. Do not run it while
/// a lab is in use: it cannot tell a leftover from a live one.
pub fn clean() -> Result<Vec<String>, LabError> {
    clean_prefix(&format!("{PREFIX}-"))
}

/// Delete every namespace whose name starts with `prefix`, which must
/// itself start with `realip-` (nothing else is ever touched).
pub fn clean_prefix(prefix: &str) -> Result<Vec<String>, LabError> {
    if !prefix.starts_with(&format!("{PREFIX}-")) {
        return Ok(Vec::new());
    }
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| LabError::Unsupported(e.to_string()))?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `ip netns list` prints "name (id: N)" for namespaces with an id.
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name.starts_with(prefix) {
            let st = Command::new("ip").args(["netns", "del", name]).output();
            if matches!(st, Ok(ref o) if o.status.success()) {
                removed.push(name.to_string());
            }
        }
    }
    Ok(removed)
}
