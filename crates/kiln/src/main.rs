//! The `kiln` binary: parse the command line, run the command, exit with its status.

fn main() -> std::process::ExitCode {
    kiln::run()
}
