//! `provisio check`: exit 1 with a diff when the output on disk is stale or hand-edited.

use crate::cli::Exit;
use crate::ops::check::check;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::args::PathArgs,
    #[command(flatten)]
    pub now: super::args::NowArg,
    /// Lines of diff shown per file.
    #[arg(long, default_value_t = 40)]
    pub max_diff_lines: usize,
}

pub fn run(args: Args) -> Exit {
    match check(&args.paths.paths(), args.now.get(), args.max_diff_lines) {
        Ok(r) if r.drifts.is_empty() => {
            eprintln!("check: the output is up to date ({} files)", r.files);
            Exit::Ok
        }
        Ok(r) => {
            print!("{}", r.diff);
            eprintln!(
                "check: {} file(s) differ from what the registry renders; run `provisio generate`",
                r.drifts.len()
            );
            Exit::Drift
        }
        Err(e) => super::report(&e),
    }
}
