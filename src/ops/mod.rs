//! The operations the commands and services call: load → plan → render → write, and
//! delivery of the output.

pub mod generate;
