//! The `iam-rotate` binary: parse, set up logging, run, map the result to
//! an exit code. The exit-code policy lives here and nowhere else:
//! 0 done or waiting, 1 error, 2 usage, 3 a plan is blocked.

use std::process::ExitCode;

use clap::Parser;

use std::io::IsTerminal;

use iam_rotate::cli::{Cli, LogFormat};
use iam_rotate::commands::{self, Status};
use iam_rotate::error::UsageError;

fn main() -> ExitCode {
    // clap prints help (exit 0) or a usage error (exit 2) itself.
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Failed) => ExitCode::from(1),
        Ok(Status::Blocked) => ExitCode::from(3),
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            eprintln!("For more information, try '--help'.");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        // aws-config warns about every credentials provider it tried (the
        // instance metadata service, for one) before the one that worked;
        // the error that matters reaches the operator through the command.
        (false, 0) => "warn,aws_config=error",
        // One line per AWS request, from iam_rotate::aws::log.
        (false, 1) => "iam_rotate=info,aws_config=error,warn",
        // The SDK's own debug and trace output can include request and
        // response bodies (aws_smithy_runtime's http and body modules), and
        // CreateAccessKey's body holds the secret: only its retry module,
        // which logs attempt numbers, error kinds and delays, is turned on.
        (false, _) => {
            "iam_rotate=debug,aws_config=info,aws_smithy_runtime::client::retries=debug,warn"
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IAM_ROTATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder
            .with_target(false)
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(text_field))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Text log lines: the message, then any field it does not already say (the
/// request log's fields are for `--log-format json`).
fn text_field(
    w: &mut tracing_subscriber::fmt::format::Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    match field.name() {
        "message" => write!(w, "{value:?}"),
        name if iam_rotate::aws::log::FIELDS.contains(&name) => Ok(()),
        name => write!(w, " {name}={value:?}"),
    }
}
