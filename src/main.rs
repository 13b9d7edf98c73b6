//! Thin entry point: parse the CLI and hand over to `cli::main`.

fn main() -> std::process::ExitCode {
    inflow::cli::main()
}
