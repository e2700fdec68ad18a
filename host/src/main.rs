//! The `panelink` binary: parses the command line and hands over to the library
//! ([`panelink::cli::main`]).

fn main() -> std::process::ExitCode {
    panelink::cli::main()
}
