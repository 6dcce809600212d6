//! `coffer-agent`: the reference backup agent for Coffer. See `coffer-agent --help`.

fn main() -> std::process::ExitCode {
    coffer_agent::cli::main_with(std::env::args_os())
}
