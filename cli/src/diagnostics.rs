//! Diagnostics: `-v`/`-vv`/`-vvv` and `RUST_LOG` choose which `tracing` events reach stderr.
//!
//! Silent by default (warnings only), so scripts and `--json` readers see nothing new. The
//! libraries log each HTTP request, each pull and deploy step and each fsync; this module
//! only decides how much of that is printed and where: stderr, never stdout, and without
//! colour codes unless stderr is a terminal.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The crates of this workspace that log: `-v` opens these; the HTTP and TLS libraries
/// below them stay at warnings until `-vvv` (or `RUST_LOG` names them).
const OWN_TARGETS: [&str; 7] = [
    "update",
    "store",
    "fetch",
    "transport",
    "deploy",
    "frontend",
    "repo_server",
];

/// The level a count of `-v` flags asks for: none = warnings, 1 = info (steps),
/// 2 = debug (each request, each fsync), 3 or more = trace.
pub fn level(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The filter for a count of `-v` flags and the value of `RUST_LOG`, in `EnvFilter`
/// syntax. `RUST_LOG` comes last, so for the targets it names it wins over `-v`.
pub fn filter_spec(verbose: u8, rust_log: &str) -> String {
    let others = if verbose >= 3 {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let mut spec = vec![others.to_string()];
    if verbose > 0 {
        let own = level(verbose);
        spec.extend(OWN_TARGETS.iter().map(|t| format!("{t}={own}")));
    }
    if !rust_log.trim().is_empty() {
        spec.push(rust_log.trim().to_string());
    }
    spec.join(",")
}

/// Install the stderr subscriber for this process.
///
/// `RUST_LOG` (the `EnvFilter` syntax, e.g. `fetch=debug,store=trace`) adds to what `-v`
/// asks for; with neither, only warnings print. A malformed `RUST_LOG` directive is
/// reported and ignored rather than failing the command.
pub fn init(verbose: u8) {
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = EnvFilter::builder().parse_lossy(filter_spec(verbose, &rust_log));
    let stderr = std::io::stderr();
    // A second subscriber (there is none in the binary) is not worth failing the command.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr.is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    #[test]
    fn each_v_flag_opens_one_more_level() {
        assert_eq!(super::level(0), LevelFilter::WARN);
        assert_eq!(super::level(1), LevelFilter::INFO);
        assert_eq!(super::level(2), LevelFilter::DEBUG);
        assert_eq!(super::level(3), LevelFilter::TRACE);
        assert_eq!(super::level(9), LevelFilter::TRACE);
    }

    #[test]
    fn v_opens_this_workspace_and_rust_log_has_the_last_word() {
        use super::filter_spec;
        assert_eq!(filter_spec(0, ""), "warn");
        assert_eq!(filter_spec(0, " fetch=debug "), "warn,fetch=debug");
        let vv = filter_spec(2, "");
        assert!(vv.starts_with("warn,"), "{vv}");
        assert!(
            vv.contains(",fetch=debug") && vv.contains(",deploy=debug"),
            "{vv}"
        );
        assert!(filter_spec(3, "").starts_with("debug,"));
        assert!(filter_spec(3, "").contains(",store=trace"));
        assert!(filter_spec(1, "fetch=trace").ends_with(",fetch=trace"));
        // Every spec parses as a whole.
        for v in 0..4 {
            let spec = filter_spec(v, "hyper_util=debug");
            for d in spec.split(',') {
                d.parse::<tracing_subscriber::filter::Directive>()
                    .unwrap_or_else(|e| panic!("{d}: {e}"));
            }
        }
    }
}
