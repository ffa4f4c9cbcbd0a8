//! The command line: serve, demo, simulate, healthcheck, rotate-secret-key, cards, openapi.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kandji_connector::config::{DEFAULT_DATABASE_URL, ServeArgs};
use kandji_connector::telemetry::{self, LogFormat};
use kandji_connector::{catalog, simulator};
use secrecy::{ExposeSecret, SecretString};

// mimalloc instead of glibc's malloc: allocation and freeing were about a quarter of the
// instructions of an invocation (bench/invoke.sh, PROFILE=callgrind); see the commit for figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kandji-connector",
    version,
    about = "Hosts Kandji action cards for workflow engines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up; boxing the large `serve` settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (configuration from KANDJI_CONNECTOR_* variables or flags).
    Serve(ServeArgs),
    /// Run the server with a simulated Kandji tenant of 1,000 devices, registered and ready to invoke.
    Demo {
        /// Address to listen on (as `serve`, also from KANDJI_CONNECTOR_LISTEN; the flag wins).
        #[arg(
            long,
            env = "KANDJI_CONNECTOR_LISTEN",
            default_value = "127.0.0.1:8080"
        )]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
    },
    /// Run a simulated Kandji tenant on its own.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
    },
    /// Exit 0 when the server on KANDJI_CONNECTOR_LISTEN answers /healthz (for container health checks).
    Healthcheck {
        #[arg(
            long,
            env = "KANDJI_CONNECTOR_LISTEN",
            default_value = "127.0.0.1:8080"
        )]
        listen: String,
    },
    /// Re-encrypt every stored secret under a new secret key (KANDJI_CONNECTOR_NEW_SECRET_KEY),
    /// keeping every connection; then start the server with the new key.
    RotateSecretKey {
        #[arg(
            long,
            env = "KANDJI_CONNECTOR_DATABASE_URL",
            hide_env_values = true,
            default_value = DEFAULT_DATABASE_URL
        )]
        database_url: SecretString,
        /// The current key (base64 of 32 bytes).
        #[arg(long, env = "KANDJI_CONNECTOR_SECRET_KEY", hide_env_values = true)]
        secret_key: SecretString,
        /// The new key (base64 of 32 bytes).
        #[arg(long, env = "KANDJI_CONNECTOR_NEW_SECRET_KEY", hide_env_values = true)]
        new_secret_key: SecretString,
    },
    /// Print the OpenAPI document generated from the routes (`docs/openapi.json` is its output:
    /// `cargo run -- openapi > docs/openapi.json`).
    Openapi,
    /// Card definitions.
    Cards {
        #[command(subcommand)]
        command: CardsCommand,
    },
}

#[derive(Subcommand)]
enum CardsCommand {
    /// Validate the built-in cards (and those of --dir / KANDJI_CONNECTOR_CARDS_DIR) against the meta-schema.
    Check {
        #[arg(long, env = "KANDJI_CONNECTOR_CARDS_DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the catalog as a Markdown table (the README's card list is generated from it).
    List,
}

/// The readable log format; the lines still waiting are written when the result is dropped.
fn init_tracing() -> telemetry::LogFlush {
    telemetry::init_logging(LogFormat::Text)
}

#[tokio::main]
async fn main() -> ExitCode {
    // reqwest is built without a default TLS provider; every subcommand that makes an HTTP client
    // (the health check included) needs one installed first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Cards { command } => cards(command),
        Command::Openapi => {
            print!("{}", kandji_connector::api::openapi::document_json());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            // A malformed format is reported with the other settings below.
            let _logs = telemetry::init_logging(
                LogFormat::parse(&args.log_format).unwrap_or(LogFormat::Text),
            );
            let config = match args.into_config() {
                Ok(c) => c,
                Err(problems) => {
                    eprintln!("kandji-connector cannot start:");
                    for p in problems {
                        eprintln!("  - {p}");
                    }
                    return ExitCode::from(2);
                }
            };
            let listen = config.listen;
            let metrics_listen = config.metrics.listen;
            let result = async {
                let state = kandji_connector::build_state(config).await?;
                let listener = tokio::net::TcpListener::bind(listen).await?;
                if let Some(addr) = metrics_listen {
                    let metrics = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                        anyhow::anyhow!("KANDJI_CONNECTOR_METRICS_LISTEN={addr}: {e}")
                    })?;
                    tracing::info!(address = %metrics.local_addr()?, "metrics endpoint listening");
                    tokio::spawn(kandji_connector::serve_metrics(state.clone(), metrics));
                }
                tracing::info!(address = %listener.local_addr()?, cards = state.catalog.len(), "serving");
                kandji_connector::serve(state, listener, kandji_connector::shutdown_signal()).await
            }
            .await;
            report(result)
        }
        Command::Demo { listen, devices } => {
            let _logs = init_tracing();
            report(kandji_connector::demo::run(listen, devices).await)
        }
        Command::RotateSecretKey {
            database_url,
            secret_key,
            new_secret_key,
        } => report(rotate(&database_url, &secret_key, &new_secret_key).await),
        Command::Healthcheck { listen } => {
            let port = listen.rsplit(':').next().unwrap_or("8080");
            let url = format!("http://127.0.0.1:{port}/healthz");
            match reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(2))
                .build()
            {
                Ok(c) => match c.get(&url).send().await {
                    Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
                    _ => ExitCode::FAILURE,
                },
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Simulate { listen, devices } => {
            let _logs = init_tracing();
            let config = simulator::SimConfig {
                devices,
                ..Default::default()
            };
            report(simulator::run_standalone(listen, config).await)
        }
    }
}

async fn rotate(
    database_url: &SecretString,
    current: &SecretString,
    new: &SecretString,
) -> anyhow::Result<()> {
    use kandji_connector::store::{self, TokenCipher};
    let current = TokenCipher::from_base64(current.expose_secret())
        .map_err(|e| anyhow::anyhow!("KANDJI_CONNECTOR_SECRET_KEY: {e}"))?;
    let new = TokenCipher::from_base64(new.expose_secret())
        .map_err(|e| anyhow::anyhow!("KANDJI_CONNECTOR_NEW_SECRET_KEY: {e}"))?;
    let store = store::open(database_url.expose_secret(), current).await?;
    let n = store.rotate_secret_key(&new).await?;
    store.close().await;
    println!(
        "re-encrypted {n} connection tokens; start the server with KANDJI_CONNECTOR_SECRET_KEY set to the new key"
    );
    Ok(())
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kandji-connector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cards(command: CardsCommand) -> ExitCode {
    let dir = match &command {
        CardsCommand::Check { dir } => dir.as_deref(),
        CardsCommand::List => None,
    };
    let c = match catalog::Catalog::load(dir) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match command {
        CardsCommand::Check { .. } => {
            println!("{} cards are valid", c.len());
            println!("{} event cards are valid", c.events().count());
        }
        CardsCommand::List => print!("{}", catalog::markdown_table(&c)),
    }
    ExitCode::SUCCESS
}
