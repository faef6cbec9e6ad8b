//! `provisio teardown tenant`: run by the teardown Job of a purging tenant: removes its data,
//! users and secrets from every shared service once its backup (or rollback) is verified, then
//! reports `teardown-completed`. Exits 0 when reported, 2 on invalid input or a refused
//! report, 3 when a server or serve is unreachable or refuses, 4 when the guard refuses
//! (nothing changed).

use std::time::Duration;

use chrono::Utc;

use super::setup::Args;
use crate::cli::Exit;
use crate::ops::report::ReportError;
use crate::ops::teardown::{Request, TeardownError, run as teardown};
use crate::setup::{Policy, SetupError};

pub fn run(args: Args, teardown_verb: bool) -> Exit {
    if !teardown_verb {
        crate::report::print_in(
            "setup tenant",
            &SetupError::invalid(
                "service",
                "`tenant` is for `teardown` only (setup runs per service)",
            ),
        );
        return Exit::Invalid;
    }
    let req = Request {
        spec: args.spec,
        store: args.secret_store,
        retry: Policy::new(args.attempts, Duration::from_millis(args.backoff_ms)),
        now: args.now.unwrap_or_else(Utc::now),
        buckets_only: args.buckets_only,
    };
    match teardown(&req, Utc::now) {
        Ok(done) => {
            print!("{}", done.changes.render("tenant"));
            println!(
                "teardown: {} {}",
                done.sent.tenant,
                if done.sent.recorded {
                    "recorded"
                } else {
                    "was already recorded"
                }
            );
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in("teardown tenant", &e);
            match &e {
                TeardownError::Setup(s) => s.into(),
                TeardownError::Report(ReportError::Unavailable(_)) => Exit::Unavailable,
                TeardownError::Report(_) => Exit::Invalid,
            }
        }
    }
}
