//! `marketgate-sim`: run the AWS Marketplace Metering and License Manager
//! simulator from the command line.
//!
//! ```text
//! marketgate-sim [--listen 127.0.0.1:0] [--config FILE] [--allow-non-loopback]
//! marketgate-sim --example-config
//! marketgate-sim check-manifest [PATH]
//! ```
//!
//! The first line of stdout is `listening on http://HOST:PORT`; the server
//! then runs until SIGINT or SIGTERM. Logs go to stderr (`RUST_LOG=debug`
//! shows every call). `check-manifest` (or `manifest`) checks a seller's
//! `Marketplace.toml` with the macros' own validation and prints the catalog
//! it compiles to.

mod manifest_report;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use marketgate_simulator::{Config, EXAMPLE_TOML, Error, Simulator};

const USAGE: &str = "\
usage: marketgate-sim [--listen ADDR] [--config FILE] [--allow-non-loopback]
       marketgate-sim --example-config
       marketgate-sim check-manifest [PATH]

  --listen ADDR          address to serve on (default 127.0.0.1:0, an ephemeral port)
  --config FILE          TOML config (default: the example config)
  --allow-non-loopback   permit a --listen address other than loopback
  --example-config       print the example config and exit
  --help                 print this help and exit
  check-manifest [PATH]  check a Marketplace.toml (default ./Marketplace.toml) with
                         the same rules as the build, and print the catalog it
                         compiles to: products, tiers, features, dimensions and
                         which features are paid paths (`manifest` is an alias)

The first line of stdout is `listening on http://HOST:PORT`.
See simulator/README.md for the config format and the inspection API.";

/// What the command line asked for.
#[derive(Debug, PartialEq)]
enum Command {
    Serve {
        listen: SocketAddr,
        config: Option<PathBuf>,
        allow_non_loopback: bool,
    },
    ExampleConfig,
    Manifest(PathBuf),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = None;
    let mut allow_non_loopback = false;
    let mut args = args.into_iter().peekable();
    if args
        .peek()
        .is_some_and(|a| a == "check-manifest" || a == "manifest")
    {
        args.next();
        let path = args.next().unwrap_or_else(|| "Marketplace.toml".to_owned());
        if let Some(extra) = args.next() {
            return Err(format!(
                "unexpected argument {extra:?} after the manifest path"
            ));
        }
        return Ok(Command::Manifest(PathBuf::from(path)));
    }
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let text = value("--listen")?;
                listen = text.parse().map_err(|_| {
                    format!("--listen {text:?} is not an address like 127.0.0.1:8080")
                })?;
            }
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--allow-non-loopback" => allow_non_loopback = true,
            "--example-config" => return Ok(Command::ExampleConfig),
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Command::Serve {
        listen,
        config,
        allow_non_loopback,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("marketgate-sim: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::ExampleConfig => {
            print!("{EXAMPLE_TOML}");
            ExitCode::SUCCESS
        }
        Command::Manifest(path) => match manifest_report::check(&path) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("marketgate-sim: {problems}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            listen,
            config,
            allow_non_loopback,
        } => match serve(listen, config, allow_non_loopback).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("marketgate-sim: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(
    listen: SocketAddr,
    config_file: Option<PathBuf>,
    allow_non_loopback: bool,
) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let in_file = |e: &dyn std::fmt::Display| match &config_file {
        Some(path) => format!("{}: {e}", path.display()),
        None => e.to_string(),
    };
    let config = match &config_file {
        Some(path) => Config::from_file(path).map_err(|e| in_file(&e))?,
        None => Config::example(),
    };
    // The config's rules are checked, and its key files read, as it starts.
    let simulator = if allow_non_loopback {
        Simulator::start_on_any_interface(listen, config).await
    } else {
        Simulator::start_on(listen, config).await
    }
    .map_err(|e| match e {
        Error::Config(_) => in_file(&e),
        _ => e.to_string(),
    })?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", simulator.endpoint())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);

    wait_for_signal().await?;
    tracing::info!("shutting down");
    simulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(|e| format!("cannot watch SIGINT: {e}")),
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_to_an_ephemeral_loopback_port_and_the_example() {
        assert_eq!(
            parse(&[]),
            Ok(Command::Serve {
                listen: "127.0.0.1:0".parse().expect("addr"),
                config: None,
                allow_non_loopback: false
            })
        );
    }

    #[test]
    fn flags_take_values_in_both_spellings() {
        assert_eq!(
            parse(&[
                "--listen",
                "[::1]:9000",
                "--config=sim.toml",
                "--allow-non-loopback"
            ]),
            Ok(Command::Serve {
                listen: "[::1]:9000".parse().expect("addr"),
                config: Some(PathBuf::from("sim.toml")),
                allow_non_loopback: true
            })
        );
        assert_eq!(parse(&["--example-config"]), Ok(Command::ExampleConfig));
        assert_eq!(
            parse(&["check-manifest"]),
            Ok(Command::Manifest(PathBuf::from("Marketplace.toml")))
        );
        assert_eq!(
            parse(&["manifest"]),
            Ok(Command::Manifest(PathBuf::from("Marketplace.toml")))
        );
        assert_eq!(
            parse(&["manifest", "app/Marketplace.toml"]),
            Ok(Command::Manifest(PathBuf::from("app/Marketplace.toml")))
        );
        assert!(parse(&["manifest", "a.toml", "b.toml"]).is_err());
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--listen", "localhost"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
    }
}
