use std::process::ExitCode;

use multifair_engine::durable::{LOCKED_EXIT, Locked};

fn main() -> ExitCode {
    // A closed pipe (`multifair evaluate ... | head -1`) ends the program quietly, as it does
    // any command-line tool, instead of a panic in println!.
    #[cfg(unix)]
    // SAFETY: restores the default action of SIGPIPE before any thread or output exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match multifair_lab::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            match error.downcast_ref::<Locked>() {
                Some(_) => ExitCode::from(LOCKED_EXIT),
                None => ExitCode::FAILURE,
            }
        }
    }
}
