//! `provisio check`: exit 1 with a diff when the output on disk is stale or hand-edited.

use crate::cli::{EXIT_DRIFT, EXIT_OK};
use crate::output::diff;
use crate::pipeline;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::PathArgs,
    #[command(flatten)]
    pub now: super::NowArg,
    /// Lines of diff shown per file.
    #[arg(long, default_value_t = 40)]
    pub max_diff_lines: usize,
}

pub fn run(args: Args) -> u8 {
    match pipeline::check(&args.paths.paths(), args.now.get()) {
        Ok(r) if r.drifts.is_empty() => {
            eprintln!(
                "check: the output is up to date ({} files)",
                r.expected.len()
            );
            EXIT_OK
        }
        Ok(r) => {
            print!(
                "{}",
                diff::render(&r.drifts, &r.expected, &r.actual, args.max_diff_lines)
            );
            eprintln!(
                "check: {} file(s) differ from what the registry renders; run `provisio generate`",
                r.drifts.len()
            );
            EXIT_DRIFT
        }
        Err(e) => super::report(&e),
    }
}
