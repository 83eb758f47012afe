//! `kiln-glance`: publish a file to Glance or download an image, outside a pipeline. The test
//! suite and `just bench-glance` drive it; `kiln publish` is the user-facing command.

fn main() -> std::process::ExitCode {
    kiln_glance::tool::main()
}
