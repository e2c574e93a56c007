//! The `nnsign` command: parses flags, calls the library, prints results. See `nnsign --help`.
#![deny(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
