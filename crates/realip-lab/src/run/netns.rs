//! Doing work inside a namespace without moving the calling thread: a
//! helper thread joins it, and sockets it makes live there.

use std::path::PathBuf;

/// Run `f` on a thread that has joined namespace `netns` (sockets it makes
/// live there); this thread stays where it is.
pub(super) fn inside<T: std::marker::Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + std::marker::Send + 'static,
) -> Result<T, String> {
    let path = PathBuf::from("/run/netns").join(netns);
    std::thread::spawn(move || -> Result<T, String> {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering {}: {e}", path.display()))?;
        Ok(f())
    })
    .join()
    .map_err(|_| format!("the thread in {netns} panicked"))?
}
