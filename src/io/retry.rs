//! The one retry/backoff policy of every outbound caller (setup's HTTP and MySQL clients, the
//! secret store, the Argo CD nudge): [`Policy`] says how many attempts and how long to wait
//! between them (exponential, factor 2, capped, with jitter outside tests), and
//! [`Policy::run`] retries what the caller's classifier calls transient (for HTTP that is
//! [`crate::io::http::is_transient`]). The waiting is `backon`'s; what counts as an attempt
//! and what is reported when they are spent (`after N attempt(s)`) is ours.
//!
//! The git push loop keeps its own loop (it regenerates between attempts and can be stopped)
//! but can take its waits from [`Policy::delays`].

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, BlockingRetryable, ExponentialBuilder};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first one included (0 counts as 1).
    pub attempts: u32,
    /// The wait after the first failed attempt; each further wait doubles it.
    pub initial: Duration,
    /// No wait is longer than this.
    pub max: Duration,
    /// Adds a random part (up to the wait itself) to every wait, so that many clients
    /// failing together do not retry together. Off in tests, whose timings must be exact.
    pub jitter: bool,
    /// No retry once this much time has passed since the first attempt began (for callers
    /// whose whole exchange has a time budget, like the nudge); `None`: no such limit.
    pub deadline: Option<Duration>,
}

impl Default for Policy {
    /// 6 attempts, waiting 0.5 s, 1 s, 2 s, 4 s, 8 s (plus jitter) between them.
    fn default() -> Self {
        Policy::new(6, Duration::from_millis(500))
    }
}

/// The last error once the attempts are spent (or at the first fatal one), with the number
/// of attempts made.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    pub attempts: u32,
}

impl Policy {
    /// The longest wait between two attempts unless a caller says otherwise.
    pub const MAX_DELAY: Duration = Duration::from_secs(30);

    /// `attempts` in all, waiting `initial`, `2·initial`, `4·initial`… (at most
    /// [`Policy::MAX_DELAY`], with jitter) between them.
    pub const fn new(attempts: u32, initial: Duration) -> Policy {
        Policy {
            attempts,
            initial,
            max: Policy::MAX_DELAY,
            jitter: true,
            deadline: None,
        }
    }

    /// The same policy with exact waits (tests).
    pub const fn without_jitter(self) -> Policy {
        Policy {
            jitter: false,
            ..self
        }
    }

    /// The same policy, retrying no more once `budget` has passed since the first attempt.
    pub const fn within(self, budget: Duration) -> Policy {
        Policy {
            deadline: Some(budget),
            ..self
        }
    }

    fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_max_times(self.attempts() as usize - 1);
        if self.jitter { b.with_jitter() } else { b }
    }

    /// The waits between attempts, in order: one fewer than the attempts.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        self.backoff().build()
    }

    /// Runs `op` until it succeeds, fails with an error `transient` does not accept, the
    /// attempts are spent or the deadline has passed (checked when an attempt fails); returns the last error with the number
    /// of attempts made. Each retry is logged with `what`, the error and the wait.
    pub fn run<T, E: fmt::Display>(
        &self,
        what: &str,
        transient: impl Fn(&E) -> bool,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> Result<T, GaveUp<E>> {
        let made = Cell::new(0u32);
        let started = Instant::now();
        let in_time = || {
            self.deadline
                .is_none_or(|budget| started.elapsed() < budget)
        };
        (|| {
            made.set(made.get() + 1);
            op()
        })
        .retry(self.backoff())
        .sleep(std::thread::sleep)
        .when(|e: &E| transient(e) && in_time())
        .notify(|e: &E, wait: Duration| {
            tracing::warn!(%what, attempt = made.get(), error = %e, retry_in = ?wait, "transient failure");
        })
        .call()
        .map_err(|error| GaveUp {
            error,
            attempts: made.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_double_up_to_the_cap_one_fewer_than_the_attempts() {
        let p = Policy {
            max: ms(250),
            ..Policy::new(6, ms(50)).without_jitter()
        };
        // backon computes in f32: exact to the microsecond.
        let waits: Vec<u128> = p
            .delays()
            .map(|d| d.as_micros().div_ceil(10) * 10)
            .collect();
        assert_eq!(waits, [50_000, 100_000, 200_000, 250_000, 250_000]);
        assert_eq!(Policy::new(1, ms(50)).delays().count(), 0);
        assert_eq!(Policy::new(0, ms(50)).delays().count(), 0);
        // Jitter adds at most the wait itself.
        for (d, base) in Policy::new(4, ms(10)).delays().zip([10, 20, 40]) {
            assert!(d >= ms(base) && d <= ms(2 * base), "{d:?}");
        }
    }

    #[test]
    fn retries_transient_errors_until_the_attempts_are_spent() {
        let p = Policy::new(3, ms(1)).without_jitter();
        let mut calls = 0;
        let r: Result<(), _> = p.run(
            "t",
            |_: &&str| true,
            || {
                calls += 1;
                Err("down")
            },
        );
        let e = r.unwrap_err();
        assert_eq!((e.error, e.attempts, calls), ("down", 3, 3));

        let mut calls = 0;
        let r = p.run(
            "t",
            |_: &&str| true,
            || {
                calls += 1;
                if calls < 3 { Err("down") } else { Ok(calls) }
            },
        );
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn a_fatal_error_ends_at_once() {
        let p = Policy::new(5, ms(1)).without_jitter();
        let mut calls = 0;
        let e = p
            .run(
                "t",
                |e: &&str| *e != "fatal",
                || -> Result<(), _> {
                    calls += 1;
                    Err(if calls == 2 { "fatal" } else { "down" })
                },
            )
            .unwrap_err();
        assert_eq!((e.error, e.attempts), ("fatal", 2));
    }

    #[test]
    fn no_retry_past_the_deadline() {
        let p = Policy::new(10, ms(40)).without_jitter().within(ms(100));
        let e = p
            .run("t", |_: &&str| true, || -> Result<(), _> { Err("down") })
            .unwrap_err();
        // Attempts at 0, 40 and 120 ms; the third fails past 100 ms, so no fourth.
        assert_eq!(e.attempts, 3);
    }
}
