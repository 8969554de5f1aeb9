//! The `chimera` command.

fn main() -> std::process::ExitCode {
    chimera::cli::main()
}
