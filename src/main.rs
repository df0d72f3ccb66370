//! The `audiences` command: parse arguments, start logging, run, map errors to exit codes.

fn main() {
    let code = audiences::cli::main();
    std::process::exit(code);
}
