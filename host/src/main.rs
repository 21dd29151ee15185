//! `par`: the command-line front end of the sandboxed APKG loader.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
