//! The output tree on disk: the state file, the writer (the only code that touches the
//! tree), reading it without following links ([`tree`]) and drift detection.
//!
//! Architecture Invariant: only [`write`] creates, replaces or removes files of the output.

pub mod diff;
pub mod error;
pub mod stat;
pub mod state;
pub mod tree;
pub mod write;

pub use stat::{StatRecord, kept as stats_kept, read_stats};
pub use state::{Inputs, STATE_FILE, State, fingerprint};
pub use write::{
    JOURNAL_FILE, OutputLock, Release, Summary, WriteError, Writer, list_dirs, list_top_files,
    lock_output, prepare_release, prepare_tenant, read_files, read_journal, read_state, read_tree,
};
