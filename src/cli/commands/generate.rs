//! `provisio generate`: render the registry into the output tree.

use crate::cli::Exit;
use crate::io::output::Summary;
use crate::io::repo::output::OutputRepo;
use crate::ops::deliver::{self, Config};
use crate::ops::generate::{self, GenerateOptions, MassDeleteGuard};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::args::PathArgs,
    #[command(flatten)]
    pub now: super::args::NowArg,
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
    pub delivery: super::args::DeliveryArgs,
}

pub fn run(args: Args) -> Exit {
    let opts = GenerateOptions {
        now: args.now.get(),
        full: args.full,
        mass_delete: MassDeleteGuard {
            max_percent: args.max_delete_percent,
            allow: args.allow_mass_delete,
        },
    };
    // With --commit, the output directory becomes a work tree of the manifests repository
    // first (a clone of `--manifests-url` when it is new), so that this run generates on top
    // of what the remote holds: generating into a fresh directory and cloning afterwards
    // would check the remote's files out over the new ones, and deliver nothing (a CI job's
    // workspace is fresh every time).
    let delivery = if args.commit {
        let cfg = match args.delivery.config(args.push) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Invalid;
            }
        };
        match OutputRepo::open(&args.paths.paths().out, &cfg.repo) {
            Ok(repo) => Some((cfg, repo)),
            Err(e) => {
                report::print(&e);
                return (&e).into();
            }
        }
    } else {
        None
    };
    let s = match generate::generate(&args.paths.paths(), &opts) {
        Ok(s) => s,
        Err(e) => return super::report(&e),
    };
    eprintln!(
        "generate: {} written, {} removed, {} unchanged ({} tenant(s) changed, {} removed)",
        s.written.len(),
        s.removed.len(),
        s.unchanged,
        s.tenants_changed.len(),
        s.tenants_removed.len()
    );
    match delivery {
        None => Exit::Ok,
        Some((cfg, repo)) => match commit(&args, &opts, &cfg, &repo, &s) {
            Ok(()) => Exit::Ok,
            Err(exit) => exit,
        },
    }
}

/// `--commit [--push]`: one delivery of what this run generated.
fn commit(
    args: &Args,
    opts: &GenerateOptions,
    cfg: &Config,
    repo: &OutputRepo,
    summary: &Summary,
) -> Result<(), Exit> {
    let paths = args.paths.paths();
    let fail = |e: &dyn std::error::Error, exit: Exit| {
        report::print(e);
        exit
    };
    // The same commit as watch's: HEAD's tree edited where this run wrote, and where the
    // state file on disk says the output differs from HEAD's (CI may start from any state of
    // the work tree: a previous run generated but did not commit).
    let outcome = deliver::deliver_run(
        repo,
        &paths,
        opts,
        cfg,
        "provisio generate --commit",
        summary,
        // With a push, the index follows the commit beside it (a second repository handle).
        match cfg.push {
            Some(_) => Some(repo.index_syncer().map_err(|e| fail(&e, (&e).into()))?),
            None => None,
        },
        &|| false,
    )
    .map_err(|e| fail(&e, (&e).into()))?;
    // The index follows the last commit (several when a rejected push was regenerated on
    // top: the reset brought the index to the remote head first).
    let started = std::time::Instant::now();
    let synced = match outcome.delivered.commits.last() {
        Some(c) if outcome.delivered.index_synced == Some(c.id) => Ok(()),
        Some(c) => repo.sync_index_after(c),
        // A killed run may have moved HEAD without updating the index.
        None => repo.sync_index_to_head(),
    };
    tracing::debug!(elapsed = ?started.elapsed(), "index synced");
    if let Err(e) = synced {
        eprintln!("warning: {}", report::chain(&e));
    }
    let d = &outcome.delivered;
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
    }
    match outcome.nudge {
        Some(Ok(status)) => eprintln!("generate: nudged Argo CD (HTTP {status})"),
        Some(Err(e)) => eprintln!("warning: {}", report::chain(&e)),
        None => {}
    }
    Ok(())
}
