//! Tracing set-up: human-readable lines on stderr, filtered by `RUST_LOG` (default `info`).

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(service: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    tracing::debug!(service, "tracing initialised");
}

/// Turns a binary's result into its exit code, printing an error as one line with its causes
/// (`{:#}`), never as a backtrace.
pub fn exit_code<E: std::fmt::Display>(r: Result<(), E>) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
