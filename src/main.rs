//! The `provisio` binary: parse, run, exit. Everything else lives in the library.

/// mimalloc instead of glibc's malloc: rendering builds and drops millions of small
/// objects, and glibc's allocator took a fifth of a cold run's CPU (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    provisio::cli::main()
}
