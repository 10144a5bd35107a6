//! The `imprint` binary: argument parsing and glue only; the station lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
