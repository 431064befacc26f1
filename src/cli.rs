//! The command line: `hop serve`, `hop keys create`, `hop config default`. Every command
//! reads the same configuration (file, `HOP_*` environment, flags) as the server.

use crate::app;
use crate::config::{Config, DEFAULT_TOML, LogFormat, Overrides};
use crate::domain::key;
use crate::store::NewApiKey;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "hop", version, about = "A self-hosted URL shortener", long_about = None)]
pub struct Cli {
    /// Configuration file (TOML); `hop config default` prints one to start from.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database [env: HOP_DATA_DIR] [default: ./hop-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on [env: HOP_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Public URL short links start with [env: HOP_BASE_URL] [default: http://<listen>]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Log format: text or json [env: HOP_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or warn [env: HOP_LOG_LEVEL] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it (alone, on the last line of output).
    Create {
        /// A name to recognise the key by, e.g. the person or program using it.
        #[arg(long)]
        name: String,
        /// Give the key admin rights (it sees and changes every link).
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration file, with comments.
    Default,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        ..Overrides::default()
    };
    match cli.command {
        Command::Config(ConfigCommand::Default) => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Serve(args) => {
            overrides.listen = args.listen;
            overrides.base_url = args.base_url;
            overrides.log_format = args.log_format;
            overrides.log_level = args.log_level;
            let config = load_config(cli.config.as_deref(), &overrides)?;
            init_logging(&config);
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind(&config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                app::serve(config, listener, app::shutdown_signal()).await
            })
        }
        Command::Keys(KeysCommand::Create { name, admin }) => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            validate_key_name(&name)?;
            runtime()?.block_on(async {
                let stores = app::open_stores(&config)?;
                let generated = key::generate();
                let stored = stores
                    .keys
                    .insert_key(NewApiKey {
                        name,
                        prefix: generated.prefix,
                        hash: generated.hash,
                        admin,
                    })
                    .await
                    .context("storing the key")?;
                let role = if stored.admin { "admin" } else { "user" };
                println!(
                    "Created {role} key `{}` (id {}, prefix {}). It is shown once; store it now:",
                    stored.name, stored.id.0, stored.prefix
                );
                println!("{}", generated.secret);
                Ok(())
            })
        }
    }
}

fn load_config(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    Ok(Config::load(file, std::env::vars(), overrides)?)
}

fn validate_key_name(name: &str) -> anyhow::Result<()> {
    let length = name.chars().count();
    if name.trim().is_empty() || length > 64 || name.chars().any(char::is_control) {
        anyhow::bail!("--name must be 1 to 64 characters without control characters");
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs go to stdout, as text or JSON lines, filtered by `log_level`.
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
