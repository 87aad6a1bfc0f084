//! Tracing set-up: human-readable lines on stderr (or JSON lines with `AT_LOG_FORMAT=json`),
//! filtered by `RUST_LOG` (default `info`).

/// Installs the global subscriber once; later calls (tests) are no-ops. `AT_LOG_FORMAT=json`: one
/// JSON object per line, with the fields of the current span (a consumed record's topic, partition
/// and offset) and of the event (a refusal's reason), for log collectors. Neither format ever
/// carries a secret or a plaintext value: our errors and events do not hold them.
pub fn init(service: &str) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"))
    };
    let json = std::env::var("AT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init()
    };
    tracing::debug!(service, "tracing initialised");
}

/// For command-line tools: a closed stdout (`at-device … | head`) ends the process quietly with
/// status 0, as a reader that went away expects, instead of `println!`'s panic report. Rust
/// ignores SIGPIPE, so the write fails with EPIPE and `println!` panics; the hook recognises that
/// panic (its message is std's "failed printing to stdout: …") and leaves every other panic to the
/// previous hook.
pub fn exit_quietly_on_broken_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        previous(info);
    }));
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
