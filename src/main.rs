//! The `hop` binary: parse the command line and hand over to [`hop::cli::run`].

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = hop::cli::Cli::parse();
    match hop::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hop: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
