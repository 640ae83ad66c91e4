//! Log output: human-readable by default, one JSON object per line with `--log-format json`.
//! `RUST_LOG` narrows or widens what is logged (default `info`). Colours only on a terminal
//! (and not with `NO_COLOR` set): a log file or collector gets plain text. Traces go out over
//! OTLP when the `OTEL_*` environment asks (see [`crate::telemetry`]).

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// # Errors
/// The `OTEL_*` environment asks for what cannot be done.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colours = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colours)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let exporting =
        crate::telemetry::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let traces =
        match exporting {
            Some(exporting) => Some(crate::telemetry::start(exporting)?.with_filter(
                Targets::new().with_target(crate::telemetry::TARGET, LevelFilter::TRACE),
            )),
            None => None,
        };
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(())
}
