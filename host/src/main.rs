//! The `panelink` binary: parses the command line and hands over to the library
//! ([`panelink::cli::main`]).

/// mimalloc: the host allocates many short-lived buffers from many threads (HTTP bodies, rows,
/// plugin payloads), where glibc malloc spent a third of the sync benchmark's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    panelink::cli::main()
}
