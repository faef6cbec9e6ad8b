//! How an error is shown: the error and every cause, on one line for logs ([`chain`]) or
//! one cause per line for a person at a terminal ([`print`]). The only error printer.

use std::error::Error;

/// The error and its causes on one line, separated by `: `.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// Prints `error: <e>` and `  caused by: <cause>` lines to stderr.
pub fn print(e: &dyn Error) {
    eprintln!("error: {e}");
    print_causes(e);
}

/// Prints `error: <context>: <e>` and `  caused by: <cause>` lines to stderr.
pub fn print_in(context: &str, e: &dyn Error) {
    eprintln!("error: {context}: {e}");
    print_causes(e);
}

fn print_causes(e: &dyn Error) {
    let mut source = e.source();
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
}
