//! Doing work inside a namespace without moving the calling thread: a
//! helper thread joins it, and sockets it makes live there.

use std::path::PathBuf;

use super::error::RunError;

/// Run `f` on a thread that has joined namespace `netns` (sockets it makes
/// live there); this thread stays where it is.
pub(super) fn inside<T: std::marker::Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + std::marker::Send + 'static,
) -> Result<T, RunError> {
    let path = PathBuf::from("/run/netns").join(netns);
    std::thread::spawn(move || -> Result<T, RunError> {
        let file = std::fs::File::open(&path).map_err(|source| RunError::OpenNetns {
            path: path.clone(),
            source,
        })?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|source| RunError::EnterNetns { path, source })?;
        Ok(f())
    })
    .join()
    .map_err(|_| RunError::Panicked {
        netns: netns.to_string(),
    })?
}
