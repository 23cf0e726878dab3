use std::process::ExitCode;

fn main() -> ExitCode {
    match multifair_experiments::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
