//! Running a benchmarked command: its wall time and peak memory, for the benchmarks that
//! compare provisio with its floor and its peer.

use std::process::Command;
use std::time::Instant;

/// Runs a command; returns (seconds, peak RSS in MiB). The child is reaped by `wait4`
/// (which also gives its peak memory), not by `Child::wait`, hence the allow.
#[allow(clippy::zombie_processes)]
pub fn measure(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    (secs, usage.ru_maxrss as f64 / 1024.0)
}
