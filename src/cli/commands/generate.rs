//! `provisio generate`: render the registry into the output tree.

use crate::cli::{EXIT_INVALID, EXIT_OK};
use crate::io::repo::deliver as delivery;
use crate::ops::generate as pipeline;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::PathArgs,
    #[command(flatten)]
    pub now: super::NowArg,
    /// Re-render every tenant and compare with the disk, ignoring the state file's hashes.
    #[arg(long)]
    pub full: bool,
    /// Allow removing more than `--max-delete-percent` of the tenants in one run.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Share of the existing tenants one run may remove without --allow-mass-delete.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_delete_percent: u32,
    /// After generating, commit the output to the git repository holding `--out` (one
    /// commit saying which tenants were added, updated, removed), for CI pipelines.
    #[arg(long)]
    pub commit: bool,
    /// Push that commit (never forced; a remote that moved is fetched and the output
    /// regenerated on top).
    #[arg(long, requires = "commit")]
    pub push: bool,
    #[command(flatten)]
    pub delivery: super::watch::DeliveryArgs,
}

pub fn run(args: Args) -> u8 {
    let opts = pipeline::GenerateOptions {
        now: args.now.get(),
        full: args.full,
        mass_delete: pipeline::MassDeleteGuard {
            max_percent: args.max_delete_percent,
            allow: args.allow_mass_delete,
        },
    };
    match pipeline::generate(&args.paths.paths(), &opts) {
        Ok(s) => {
            eprintln!(
                "generate: {} written, {} removed, {} unchanged ({} tenant(s) changed, {} removed)",
                s.written.len(),
                s.removed.len(),
                s.unchanged,
                s.tenants_changed.len(),
                s.tenants_removed.len()
            );
            if args.commit {
                deliver(&args, &opts)
            } else {
                EXIT_OK
            }
        }
        Err(e) => super::report(&e),
    }
}

/// `--commit [--push]`: one delivery of what this run generated.
fn deliver(args: &Args, opts: &pipeline::GenerateOptions) -> u8 {
    let cfg = match args.delivery.config(args.push, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let paths = args.paths.paths();
    let result = delivery::OutputRepo::open(&paths.out, &cfg.repo).and_then(|repo| {
        let why = delivery::Why {
            trigger: "provisio generate --commit".into(),
            registry_commit: delivery::registry_commit(&paths.registry),
        };
        // On top of another writer's commit (a rejected push) the state file is theirs:
        // re-render everything and compare with the disk rather than trust it.
        let full = pipeline::GenerateOptions {
            full: true,
            ..opts.clone()
        };
        let mut regenerate = || pipeline::generate(&paths, &full);
        // Stage by scanning the output paths rather than from this run's summary: CI may
        // start from any state of the work tree (a previous run generated but did not commit).
        let d = repo.deliver(None, &why, cfg.push.as_ref(), &mut regenerate, &|| false)?;
        Ok((repo, d))
    });
    match result {
        Ok((repo, d)) => {
            match d.commits.last() {
                Some(c) => eprintln!(
                    "generate: committed {} on {}",
                    &c.id.to_string()[..12],
                    repo.branch()
                ),
                None => eprintln!("generate: nothing to commit"),
            }
            if let Some((_, after)) = d.pushed {
                eprintln!(
                    "generate: pushed {} to {} ({} retr{})",
                    &after.to_string()[..12],
                    args.delivery.remote,
                    d.push_retries,
                    if d.push_retries == 1 { "y" } else { "ies" }
                );
                if let Some(n) = &cfg.nudge {
                    match repo.nudge(n, &d) {
                        Ok(Some(status)) => eprintln!("generate: nudged Argo CD (HTTP {status})"),
                        Ok(None) => {}
                        Err(e) => eprintln!("warning: {}", delivery::chain(&e)),
                    }
                }
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {}", delivery::chain(&e));
            EXIT_INVALID
        }
    }
}
