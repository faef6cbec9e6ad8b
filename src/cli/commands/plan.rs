//! `provisio plan`: print what a registry change does to GitLab, Grafana, Artifactory and the
//! team namespaces, losses first, compared with a base (a git revision or a directory).

use crate::cli::Exit;
use crate::ops::plan::{Base, PlanError, plan};
use crate::report;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("base_source").required(true).args(["base", "base_dir"])))]
pub struct Args {
    /// The registry directory reviewed (the change).
    #[arg(long, default_value = "registry")]
    pub registry: std::path::PathBuf,
    /// Compare with the registry at this revision of its git repository (e.g. `origin/main`,
    /// what a merge request pipeline passes).
    #[arg(long)]
    pub base: Option<String>,
    /// Compare with the registry in this directory.
    #[arg(long)]
    pub base_dir: Option<std::path::PathBuf>,
    /// Exit 1 when the change loses anything (destroys, prunes, removes or releases), so a
    /// pipeline can require an approval.
    #[arg(long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub now: super::args::NowArg,
}

pub fn run(args: Args) -> Exit {
    let base = match (args.base, args.base_dir) {
        (Some(rev), _) => Base::Revision(rev),
        (None, Some(dir)) => Base::Dir(dir),
        (None, None) => unreachable!("clap requires one"),
    };
    match plan(&args.registry, &base, args.now.get()) {
        Ok(p) => {
            print!("{}", p.text);
            if args.exit_code && p.loses {
                Exit::Drift
            } else {
                Exit::Ok
            }
        }
        Err(PlanError::Head(e)) => super::report(&e),
        Err(e @ PlanError::InvalidBase { .. }) => {
            if let PlanError::InvalidBase { report, .. } = &e {
                eprint!("{}", report.render());
            }
            report::print(&e);
            (&e).into()
        }
        Err(e) => {
            report::print(&e);
            (&e).into()
        }
    }
}
