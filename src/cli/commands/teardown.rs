//! `provisio teardown tenant`: run by the teardown Job of a purging tenant: removes its data,
//! users and secrets from every shared service once its backup (or rollback) is verified, then
//! reports `teardown-completed`. Exits 0 when reported (or already recorded by serve: then
//! nothing is done), 2 on invalid input or a refused
//! report, 3 when a server or serve is unreachable or refuses, 4 when the guard refuses
//! (nothing changed).

use chrono::Utc;

use crate::cli::Exit;
use crate::ops::report::ReportError;
use crate::ops::teardown::{Done, Request, TeardownError, run as teardown};

pub fn run(req: &Request) -> Exit {
    match teardown(req, Utc::now) {
        Ok(Done::TornDown { changes, sent, .. }) => {
            print!("{}", changes.render("tenant"));
            println!(
                "teardown: {} {}",
                sent.tenant,
                if sent.recorded {
                    "recorded"
                } else {
                    "was already recorded"
                }
            );
            Exit::Ok
        }
        Ok(Done::AlreadyRecorded { phase }) => {
            println!("teardown: already recorded by serve ({phase}): nothing done");
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
