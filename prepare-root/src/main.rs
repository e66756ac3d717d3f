//! `update-prepare-root [--sysroot DIR] [--proc-cmdline FILE] [--dry-run]`: the
//! initramfs's `update prepare-root` (see the library's documentation).

use std::io::Write;
use std::process::ExitCode;

use update_prepare_root::args::{self, Action, USAGE};

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args_os().skip(1)) {
        Ok(Action::Prepare(opts)) => opts,
        Ok(Action::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Action::Version) => {
            println!("update-prepare-root {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("update-prepare-root: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match update_prepare_root::prepare(&opts, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("update-prepare-root: {}", error_ext::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
