//! When to sync: kube-proxy's bounded-frequency runner, as a pure
//! function of times so that the policy is tested without a clock.
//!
//! - A change syncs at once, unless the last sync began less than
//!   `min_sync` ago; then it waits for the rest of that period, and every
//!   change meanwhile is folded into the one sync that follows (the
//!   source is reloaded whole, so "pending" is one flag, not a queue).
//! - Every `sync` period it syncs even without a change (kube-proxy's
//!   `--sync-period`): the objects are reloaded and only a difference is
//!   sent, so an idle node sends nothing.
//! - Every `full` period the tables are replaced whole, repairing what was
//!   changed behind the agent's back (kube-proxy's fixed one-hour
//!   `FullSyncPeriod`).
//! - A failed sync is retried a `sync` period later, or sooner when the
//!   objects change again, and the retry replaces the tables whole: after
//!   a failure the kernel's state is not known. kube-proxy does the same
//!   (`RetryAfter(syncPeriod)`, `needFullSync`), so a node that cannot be
//!   programmed does not retry, and log, in a tight loop.

use std::time::{Duration, Instant};

/// The two periods of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// Syncs begin at least this far apart (`--min-sync-period`).
    pub min_sync: Duration,
    /// A sync runs at least this often, changes or not (`--sync-period`);
    /// a failed sync is retried after it.
    pub sync: Duration,
    /// The tables are replaced whole this often (`--full-sync-period`).
    pub full: Duration,
}

/// What the agent does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sync now; `full` replaces the tables whole.
    Sync {
        /// Replace the tables whole rather than send the difference.
        full: bool,
    },
    /// Nothing is due before this instant (a change may still arrive and
    /// make something due sooner: ask again then).
    WaitUntil(Instant),
}

/// The runner's memory of past syncs.
#[derive(Debug, Clone)]
pub struct Runner {
    periods: Periods,
    last_attempt: Option<Instant>,
    last_full: Option<Instant>,
    failed: bool,
}

impl Runner {
    /// A runner that has not synced yet: its first step is a full sync.
    pub fn new(periods: Periods) -> Self {
        Runner {
            periods,
            last_attempt: None,
            last_full: None,
            failed: false,
        }
    }

    /// The last sync failed (or none has been tried).
    pub fn failing(&self) -> bool {
        self.failed || self.last_attempt.is_none()
    }

    /// The step at `now`; `pending` says the objects changed since the
    /// last sync began.
    pub fn next(&self, now: Instant, pending: bool) -> Step {
        let Some(last) = self.last_attempt else {
            return Step::Sync { full: true };
        };
        let earliest = last + self.periods.min_sync;
        if self.failed {
            let retry = last + self.periods.sync;
            return if now >= retry || (pending && now >= earliest) {
                Step::Sync { full: true }
            } else if pending {
                Step::WaitUntil(earliest.min(retry))
            } else {
                Step::WaitUntil(retry)
            };
        }
        let full_at = self.last_full.map_or(now, |t| t + self.periods.full);
        let periodic = (last + self.periods.sync).min(full_at);
        if now >= periodic || pending {
            if now >= earliest {
                Step::Sync {
                    full: now >= full_at,
                }
            } else {
                Step::WaitUntil(earliest)
            }
        } else {
            Step::WaitUntil(periodic)
        }
    }

    /// A sync that began at `at` finished; `full` as [`Step::Sync`] asked.
    pub fn attempted(&mut self, at: Instant, full: bool, ok: bool) {
        self.last_attempt = Some(at);
        self.failed = !ok;
        if ok && full {
            self.last_full = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(1);
    const SYNC: Duration = Duration::from_secs(30);
    const FULL: Duration = Duration::from_secs(3600);

    fn runner() -> (Runner, Instant) {
        (
            Runner::new(Periods {
                min_sync: MIN,
                sync: SYNC,
                full: FULL,
            }),
            Instant::now(),
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_sync_is_full_and_immediate() {
        let (r, t0) = runner();
        assert!(r.failing());
        assert_eq!(r.next(t0, false), Step::Sync { full: true });
        assert_eq!(r.next(t0, true), Step::Sync { full: true });
    }

    #[test]
    fn idle_syncs_every_sync_period_and_whole_every_full_period() {
        let (mut r, t0) = runner();
        r.attempted(t0, true, true);
        assert!(!r.failing());
        assert_eq!(r.next(t0 + ms(500), false), Step::WaitUntil(t0 + SYNC));
        // The periodic sync sends only a difference...
        assert_eq!(r.next(t0 + SYNC, false), Step::Sync { full: false });
        let mut t = t0;
        while t + SYNC < t0 + FULL {
            t += SYNC;
            r.attempted(t, false, true);
        }
        // ...until the full period, counted from the last full sync.
        assert_eq!(r.next(t0 + FULL - ms(1), false), Step::WaitUntil(t0 + FULL));
        assert_eq!(r.next(t0 + FULL, false), Step::Sync { full: true });
    }

    #[test]
    fn a_change_after_the_min_period_syncs_at_once_and_partially() {
        let (mut r, t0) = runner();
        r.attempted(t0, true, true);
        assert_eq!(r.next(t0 + ms(5000), true), Step::Sync { full: false });
    }

    #[test]
    fn changes_within_the_min_period_coalesce_into_one_sync() {
        let (mut r, t0) = runner();
        r.attempted(t0, true, true);
        // Three changes at 200, 500 and 900 ms: each asks, each is told
        // to wait for the end of the period.
        for at in [200, 500, 900] {
            assert_eq!(r.next(t0 + ms(at), true), Step::WaitUntil(t0 + MIN));
        }
        // At 1 s the one sync runs, covering all three.
        assert_eq!(r.next(t0 + MIN, true), Step::Sync { full: false });
        r.attempted(t0 + MIN, false, true);
        // Nothing new: back to waiting for the periodic sync, which counts
        // from the last sync.
        assert_eq!(
            r.next(t0 + ms(1100), false),
            Step::WaitUntil(t0 + MIN + SYNC)
        );
        // A change right after that sync waits for the next period.
        assert_eq!(r.next(t0 + ms(1100), true), Step::WaitUntil(t0 + 2 * MIN));
    }

    #[test]
    fn the_full_resync_also_respects_the_min_period() {
        let (mut r, t0) = runner();
        r.attempted(t0, true, true);
        let just_before = t0 + FULL - ms(100);
        r.attempted(just_before, false, true);
        assert_eq!(r.next(t0 + FULL, false), Step::WaitUntil(just_before + MIN));
        assert_eq!(r.next(just_before + MIN, false), Step::Sync { full: true });
    }

    #[test]
    fn a_failure_retries_a_sync_period_later_and_whole() {
        let (mut r, t0) = runner();
        r.attempted(t0, true, true);
        let t1 = t0 + ms(5000);
        r.attempted(t1, false, false);
        assert!(r.failing());
        // No tight loop: nothing new, nothing before the retry.
        assert_eq!(r.next(t1 + ms(10), false), Step::WaitUntil(t1 + SYNC));
        assert_eq!(r.next(t1 + SYNC, false), Step::Sync { full: true });
        // A change brings the retry forward, after the min period.
        assert_eq!(r.next(t1 + ms(10), true), Step::WaitUntil(t1 + MIN));
        assert_eq!(r.next(t1 + MIN, true), Step::Sync { full: true });
        // Once it works, the normal policy resumes.
        r.attempted(t1 + MIN, true, true);
        assert!(!r.failing());
        assert_eq!(
            r.next(t1 + ms(1500), false),
            Step::WaitUntil(t1 + MIN + SYNC)
        );
        assert_eq!(r.next(t1 + MIN + SYNC, false), Step::Sync { full: false });
    }

    #[test]
    fn a_zero_min_period_syncs_every_change() {
        let mut r = Runner::new(Periods {
            min_sync: Duration::ZERO,
            sync: SYNC,
            full: FULL,
        });
        let t0 = Instant::now();
        r.attempted(t0, true, true);
        assert_eq!(r.next(t0, true), Step::Sync { full: false });
    }
}
