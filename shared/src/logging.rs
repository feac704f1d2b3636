//! Logging of both daemons (feature `logging`): `tracing` events on stderr, filtered by
//! `FIBERLB_LOG` (else `RUST_LOG`, else `info`; the usual directives: `debug`,
//! `info,fiberlb_controlplane::bgp=debug`), as text or, with `FIBERLB_LOG_FORMAT=json`, as one
//! JSON object per line for log shippers. Under systemd (stderr connected to the journal,
//! `JOURNAL_STREAM` set) text lines carry no timestamp: journald adds its own. Records of the
//! `log` crate (library code) are carried into the same output.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; a second call is a no-op.
///
/// # Errors
/// A filter directive that does not parse, with the variable it came from.
pub fn init() -> Result<(), String> {
    let (var, directives) = match (std::env::var("FIBERLB_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => ("FIBERLB_LOG", v),
        (Err(_), Ok(v)) => ("RUST_LOG", v),
        _ => ("", "info".to_string()),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("{var}={directives:?}: {e}"))?;
    let json = std::env::var("FIBERLB_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // `try_init` also routes the `log` crate's records (tracing-log) into the subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else if journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}
