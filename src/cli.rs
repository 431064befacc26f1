//! The command line: `hop serve`, `hop migrate`, `hop copy`, `hop users …`, `hop keys …`,
//! `hop links …`, `hop domains …`, `hop config default`, `hop check`, `hop backup`,
//! `hop restore`. Every command reads the same configuration (file, `HOP_*`
//! environment, flags) as the server; those that change links or domains, `migrate`
//! and `restore` take the database's writer lock first (refused while a server holds
//! it; a PostgreSQL database has none, being made for many processes).

use crate::app;
use crate::config::{Config, DEFAULT_TOML, LogFormat, Overrides};
use crate::domain::host::DomainName;
use crate::domain::link::{
    Link, LinkRequest, PatchRequest, UnixMillis, format_ms, now_ms, valid_tags,
};
use crate::hosts::Site;
use crate::store::{DomainRemoval, LinkQuery, StoreError, Stores, User};
use crate::tier::message::Change;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "hop",
    version,
    about = "A self-hosted URL shortener",
    long_about = None,
    after_help = "Commands that change links or domains, and `restore`, need the embedded \
                  database to themselves: while `hop serve` runs on the same data directory \
                  they are refused, naming its pid (the server caches links and domains; \
                  make such changes through its API). `users` and `keys` commands, \
                  listings, `check` and `backup` work beside a running server."
)]
pub struct Cli {
    /// Configuration file (TOML); `hop config default` prints one to start from.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded database [env: HOP_DATA_DIR] [default: ./hop-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE
    /// [env: HOP_DATABASE_URL] [default: sqlite://<data-dir>/hop.db]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Redis shared by a cluster's nodes: redis://HOST:PORT/DB [env: HOP_REDIS_URL]
    /// [default: none]
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// NATS with JetStream carrying a cluster's visits to `hop worker`:
    /// nats://HOST:PORT [env: HOP_NATS_URL] [default: none]
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Public URL short links start with [env: HOP_BASE_URL] [default: http://<listen>];
    /// the link commands print short URLs and check for loops with it, as the server does
    #[arg(long, global = true, value_name = "URL")]
    pub base_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Store the visits a cluster's nodes publish to the click stream (nats_url).
    ///
    /// Run any number: they share one durable consumer. Each fetch is enriched and
    /// stored in one transaction with its message ids, so nothing is counted twice.
    /// Needs nats_url and a PostgreSQL database_url; stops cleanly on SIGTERM.
    Worker(WorkerArgs),
    /// Manage users (they own links and API keys).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage links in the database.
    ///
    /// Changes need the server stopped; while it runs, the API makes them.
    #[command(subcommand)]
    Links(LinksCommand),
    /// Manage the domains links can live under besides the default one.
    ///
    /// The default domain is the host of base_url. Changes need the server stopped;
    /// while it runs, the API makes them.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// Apply pending database migrations and exit (serve also applies them at start).
    Migrate,
    /// Copy an embedded install (SQLite) onto PostgreSQL: every link with its code,
    /// user, key, domain, click count, rollup and raw visit. Resumes where an
    /// interrupted copy stopped. Stop hop on the source first.
    Copy {
        /// The SQLite database, e.g. sqlite:///var/lib/hop/hop.db
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database, e.g. postgres://hop@db.example:5432/hop
        #[arg(long, value_name = "URL")]
        to: String,
        /// Copy even if the target already holds data (rows whose keys exist there
        /// are kept as they are).
        #[arg(long)]
        allow_non_empty: bool,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check the whole embedded database for damage.
    ///
    /// Every page, every index against its table, foreign keys. Read-only, so it may
    /// run beside a server; exits non-zero if the database is damaged. (`hop serve`
    /// runs a quicker check of the pages on start, see startup_check_max_ms.)
    Check,
    /// Copy the embedded database to a new FILE, consistently, even while hop serves.
    ///
    /// SQLite's online backup: the copy holds every write committed before it began and
    /// none after. FILE must not exist; the copy is checked before it gets its name.
    Backup {
        /// The new backup file.
        file: PathBuf,
    },
    /// Replace the embedded database with a backup FILE (server stopped).
    ///
    /// Refused while a server runs on the data directory. FILE is checked first (full
    /// integrity check, a schema version this hop knows); the database it replaces is
    /// kept beside it as hop.db.before-restore-<time>.
    Restore {
        /// A file made by `hop backup`.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on [env: HOP_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The logging flags of the long-running commands (`serve`, `worker`).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format: text or json [env: HOP_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or warn [env: HOP_LOG_LEVEL] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Answer /healthz, /readyz and /metrics on this address (e.g. 127.0.0.1:9090)
    /// [default: none]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user.
    Add {
        /// The user's name (1 to 64 characters).
        name: String,
        /// Make the user an admin (sees and changes every link).
        #[arg(long)]
        admin: bool,
    },
    /// List users with their role and number of usable keys.
    List,
    /// Set a user's password for the web dashboard (/app), ending their sessions.
    ///
    /// The password is read from the terminal (asked twice, not shown), or as one line
    /// of standard input when it is not a terminal: `echo "$PW" | hop users passwd NAME`.
    Passwd {
        name: String,
        /// Remove the password instead: the user can no longer sign in.
        #[arg(long, conflicts_with = "link")]
        remove: bool,
        /// Print a one-time link (valid 24 hours) where the user sets it themselves.
        #[arg(long)]
        link: bool,
    },
    /// Remove a user and revoke their keys (their links stay).
    Remove {
        name: String,
        /// Remove the last admin too (nobody could then manage users' links over the
        /// API until `hop keys create --admin` makes a new one).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it (alone, on the last line of output).
    ///
    /// With --user, the key belongs to that existing user and --name labels it.
    /// Without --user, --name names the user, who is created if needed (an admin
    /// with --admin).
    Create {
        /// The user the key belongs to.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// A label for the key; without --user, the user's name.
        #[arg(long)]
        name: Option<String>,
        /// Without --user: create the user as an admin.
        #[arg(long)]
        admin: bool,
        /// When the key stops working (RFC 3339, e.g. 2030-01-31T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
    },
    /// List keys (prefix, label, user, role, state); never the secrets.
    List {
        /// Only this user's keys.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Revoke a key by its visible prefix (as `keys list` shows it).
    Revoke { prefix: String },
}

#[derive(Debug, Subcommand)]
pub enum LinksCommand {
    /// Create a link (validated like the API) and print its short URL last.
    Create {
        /// The target URL.
        url: String,
        /// The user who owns the link.
        #[arg(long, value_name = "USER")]
        user: String,
        /// A custom code instead of a generated one.
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        title: Option<String>,
        /// When the link stops redirecting (RFC 3339).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// Clicks after which the link stops redirecting.
        #[arg(long, value_name = "N")]
        max_clicks: Option<i64>,
        /// 301, 302 (default), 307 or 308.
        #[arg(long, value_name = "STATUS")]
        redirect_type: Option<u16>,
        /// A tag (repeat for more).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// The domain the link lives in (a registered domain; default: base_url's host).
        #[arg(long, value_name = "HOST")]
        domain: Option<String>,
    },
    /// List links, newest first.
    List {
        /// Only this user's links.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Only links whose code, URL or title contains this text.
        #[arg(long, value_name = "TEXT")]
        query: Option<String>,
        /// Only links with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one link.
    Get {
        code: String,
        /// The link's domain (default: base_url's host).
        #[arg(long, value_name = "HOST")]
        domain: Option<String>,
    },
    /// Delete a link (with the server stopped; the API's DELETE acts while it runs).
    Delete {
        code: String,
        /// The link's domain (default: base_url's host).
        #[arg(long, value_name = "HOST")]
        domain: Option<String>,
    },
    /// Disable a link as an admin, saying why: visitors get a neutral 410 and only an
    /// admin can enable it again (the API's PATCH with `disabledReason` acts while
    /// the server runs).
    Disable {
        code: String,
        /// Why (shown to the link's owner, never to visitors).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// The link's domain (default: base_url's host).
        #[arg(long, value_name = "HOST")]
        domain: Option<String>,
    },
    /// Enable a disabled link again (and clear an admin's reason).
    Enable {
        code: String,
        /// The link's domain (default: base_url's host).
        #[arg(long, value_name = "HOST")]
        domain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainsCommand {
    /// Register a domain, e.g. go.example.com (add :PORT to serve one port only).
    Add {
        /// A bare host name; letters are lower-cased, international names stored as
        /// punycode.
        name: String,
    },
    /// List the default domain and the registered ones, with their live links.
    List,
    /// Remove a domain; refused while live links are in it.
    Remove { name: String },
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
        base_url: cli.base_url.clone(),
        database_url: cli.database_url.clone(),
        redis_url: cli.redis_url.clone(),
        nats_url: cli.nats_url.clone(),
        ..Overrides::default()
    };
    match cli.command {
        Command::Config(ConfigCommand::Default) => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Check => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            run_check(&config)
        }
        Command::Backup { file } => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            run_backup(&config, &file)
        }
        Command::Restore { file } => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            let _lock = app::lock_for_writing(&config, "hop restore")?;
            run_restore(&config, &file)
        }
        Command::Serve(args) => {
            overrides.listen = args.listen;
            overrides.log_format = args.log.log_format;
            overrides.log_level = args.log.log_level;
            let config = load_config(cli.config.as_deref(), &overrides)?;
            init_logging(&config);
            // Before the port: a second server on this data dir is told who holds it.
            let _lock = app::lock_for_writing(&config, "hop serve")?;
            runtime()?.block_on(async {
                let listener = tokio::net::TcpListener::bind(&config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                app::serve(config, listener, app::shutdown_signal()).await
            })
        }
        Command::Worker(args) => {
            overrides.log_format = args.log.log_format;
            overrides.log_level = args.log.log_level;
            let config = command_config(cli.config.as_deref(), &overrides)?;
            init_logging(&config);
            runtime()?.block_on(run_worker(&config, args.listen.as_deref()))
        }
        Command::Copy {
            from,
            to,
            allow_non_empty,
        } => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            // The source's writer lock: no server may change it while it is copied.
            let _lock = crate::store::lock_for_writing(&from, "hop copy")?;
            runtime()?.block_on(run_copy(&config, &from, &to, allow_non_empty))
        }
        Command::Migrate => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            let _lock = app::lock_for_writing(&config, "hop migrate")?;
            runtime()?.block_on(run_migrate(&config))
        }
        // Users and keys need no lock: a server keeps no copy of them it trusts for
        // long (a key for a second, `KEY_CACHE_TTL`), so a key revoked here stops
        // working on a running server at once; that is how a leaked key is revoked
        // without a restart.
        Command::Users(command) => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            runtime()?.block_on(run_users(command, &config))
        }
        Command::Keys(command) => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            runtime()?.block_on(run_keys(command, &config))
        }
        Command::Links(command) => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            let _lock = match &command {
                LinksCommand::List { .. } | LinksCommand::Get { .. } => None,
                LinksCommand::Create { .. } => app::lock_for_writing(&config, "hop links create")?,
                LinksCommand::Delete { .. } => app::lock_for_writing(&config, "hop links delete")?,
                LinksCommand::Disable { .. } => {
                    app::lock_for_writing(&config, "hop links disable")?
                }
                LinksCommand::Enable { .. } => app::lock_for_writing(&config, "hop links enable")?,
            };
            runtime()?.block_on(run_links(command, &config))
        }
        Command::Domains(command) => {
            let config = command_config(cli.config.as_deref(), &overrides)?;
            let _lock = match &command {
                DomainsCommand::List => None,
                DomainsCommand::Add { .. } => app::lock_for_writing(&config, "hop domains add")?,
                DomainsCommand::Remove { .. } => {
                    app::lock_for_writing(&config, "hop domains remove")?
                }
            };
            runtime()?.block_on(run_domains(command, &config))
        }
    }
}

/// The embedded database's file, or an error for a configuration without one.
fn sqlite_file(config: &Config, command: &str) -> anyhow::Result<PathBuf> {
    let url = config.database_url();
    crate::store::sqlite_path(&url)
        .map(PathBuf::from)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`hop {command}` works on the embedded SQLite database; database_url `{url}` \
                 names another backend, which has tools of its own"
            )
        })
}

fn run_check(config: &Config) -> anyhow::Result<()> {
    let path = sqlite_file(config, "check")?;
    let started = std::time::Instant::now();
    let report =
        crate::store::sqlite::files::full_check(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = started.elapsed().as_secs_f64();
    if report.problems.is_empty() {
        println!(
            "{}: ok (schema version {}, {} live links; checked in {took:.2} s)",
            path.display(),
            report.schema_version,
            report.links
        );
        return Ok(());
    }
    println!(
        "{}: {} problem(s) found:",
        path.display(),
        report.problems.len()
    );
    for problem in &report.problems {
        println!("  {problem}");
    }
    anyhow::bail!(
        "{} is damaged; restore a backup with `hop restore FILE` (server stopped)",
        path.display()
    )
}

fn run_backup(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let path = sqlite_file(config, "backup")?;
    let started = std::time::Instant::now();
    let report = crate::store::sqlite::files::backup(&path, file)
        .map_err(|e| anyhow::anyhow!("backup of {} failed: {e}", path.display()))?;
    println!(
        "Backed up {} ({} live links, schema version {}, {} bytes) to {} in {:.2} s.",
        path.display(),
        report.links,
        report.schema_version,
        report.bytes,
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_restore(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let path = sqlite_file(config, "restore")?;
    let restored = crate::store::sqlite::files::restore(&path, file)
        .map_err(|e| anyhow::anyhow!("not restored: {e}; {} is unchanged", path.display()))?;
    println!(
        "Restored {} ({} live links, schema version {}) from {}.",
        path.display(),
        restored.report.links,
        restored.report.schema_version,
        file.display()
    );
    if let Some(previous) = restored.previous {
        println!(
            "The database it replaced is kept as {}.",
            previous.display()
        );
    }
    Ok(())
}

async fn run_copy(
    config: &Config,
    from: &str,
    to: &str,
    allow_non_empty: bool,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let Some(path) = from.strip_prefix("sqlite://") else {
        anyhow::bail!(
            "--from must be a sqlite:// URL (the embedded database), not `{}`",
            crate::store::redacted(from)
        );
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!(
            "--to must be a postgres:// URL, not `{}`",
            crate::store::redacted(to)
        );
    }
    let shown = crate::store::redacted(to);
    let terminal = std::io::stderr().is_terminal();
    let mut last_tenth = -1;
    // A bar that redraws in place on a terminal; a line per tenth otherwise.
    let show = |p: crate::store::postgres::copy::Progress| {
        let percent = (p.links_done * 100)
            .checked_div(p.links_total)
            .unwrap_or(100) as i64;
        let width = 30;
        let filled = (percent * width / 100) as usize;
        let bar = format!(
            "[{}{}] {percent:>3}%  links {} of {}, {} rows",
            "#".repeat(filled),
            " ".repeat(width as usize - filled),
            p.links_done,
            p.links_total,
            p.rows
        );
        if terminal {
            eprint!("\r{bar}");
            let _ = std::io::stderr().flush();
        } else if percent / 10 != last_tenth {
            last_tenth = percent / 10;
            eprintln!("{bar}");
        }
    };
    let report = crate::store::postgres::copy::copy_from_sqlite(
        std::path::Path::new(path),
        to,
        &config.store_options(),
        allow_non_empty,
        show,
    )
    .await
    .with_context(|| format!("copying {path} to {shown}"))?;
    if terminal {
        eprintln!();
    }
    if report.already_done {
        println!("{path} was already copied to {shown}; nothing to do.");
    } else {
        let how = if report.resumed {
            "Resumed and finished"
        } else {
            "Finished"
        };
        println!(
            "{how} copying {path} to {shown}: {} rows written.",
            report.rows
        );
    }
    Ok(())
}

async fn run_migrate(config: &Config) -> anyhow::Result<()> {
    let url = config.database_url();
    let shown = crate::store::redacted(&url);
    let (before, after) = crate::store::migrate(&url, &config.store_options())
        .await
        .with_context(|| format!("migrating database {shown}"))?;
    if before == after {
        println!("Database {shown} is up to date (schema version {after}).");
    } else {
        println!("Database {shown} migrated from schema version {before} to {after}.");
    }
    Ok(())
}

async fn run_users(command: UsersCommand, config: &Config) -> anyhow::Result<()> {
    let stores = app::open_stores(config).await?;
    match command {
        UsersCommand::Add { name, admin } => {
            validate_name("user name", &name)?;
            let user = match stores.keys.insert_user(&name, admin).await {
                Err(StoreError::Conflict) => anyhow::bail!("a user named `{name}` already exists"),
                other => other?,
            };
            println!("Added {} `{}` (id {}).", user.role(), user.name, user.id.0);
        }
        UsersCommand::List => {
            let users = stores.keys.list_users().await?;
            println!("{:<24} {:<6} {:>5}  CREATED", "NAME", "ROLE", "KEYS");
            for (user, keys) in users {
                println!(
                    "{:<24} {:<6} {keys:>5}  {}",
                    user.name,
                    user.role(),
                    format_ms(user.created_at)
                );
            }
        }
        UsersCommand::Passwd {
            name, link: true, ..
        } => {
            let Some(user) = stores.keys.user_by_name(&name).await? else {
                anyhow::bail!("no user named `{name}`");
            };
            let base_url = config.public_base().map_err(anyhow::Error::msg)?;
            let link = crate::http::dashboard::new_password_link(
                &stores,
                base_url.as_str().trim_end_matches('/'),
                user.id,
            )
            .await?;
            println!("`{name}` sets a new password within 24 hours at:\n{link}");
        }
        UsersCommand::Passwd { name, remove, .. } => {
            let hash = if remove {
                None
            } else {
                let password = read_new_password(&name)?;
                Some(
                    tokio::task::spawn_blocking(move || crate::domain::password::hash(&password))
                        .await?,
                )
            };
            if !stores.sessions.set_password(&name, hash).await? {
                anyhow::bail!("no user named `{name}`");
            }
            if remove {
                println!("Removed the password of `{name}` and ended their sessions.");
            } else {
                println!("Set the password of `{name}`; their other sessions are ended.");
            }
        }
        UsersCommand::Remove { name, force } => {
            let users = stores.keys.list_users().await?;
            let target = users.iter().find(|(user, _)| user.name == name);
            let admins = users.iter().filter(|(user, _)| user.admin).count();
            if target.is_some_and(|(user, _)| user.admin) && admins == 1 && !force {
                anyhow::bail!(
                    "`{name}` is the last admin; removing them leaves nobody to manage other \
                     users' links over the API. Add another admin first \
                     (`hop users add NAME --admin`), or pass --force"
                );
            }
            if !stores.keys.remove_user(&name).await? {
                anyhow::bail!("no user named `{name}`");
            }
            app::notify_cluster(config, &[Change::Keys]).await;
            println!("Removed user `{name}` and revoked their keys; their links remain.");
        }
    }
    Ok(())
}

/// A new password from the terminal (typed twice, echo off) or one line of stdin.
fn read_new_password(name: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let read_line = || -> anyhow::Result<String> {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let password = if stdin.is_terminal() {
        let ask = |prompt: &str| -> anyhow::Result<String> {
            eprint!("{prompt}");
            std::io::stderr().flush()?;
            let line = without_echo(&stdin, read_line);
            eprintln!();
            line
        };
        let first = ask(&format!("New password for `{name}`: "))?;
        if ask("Once more: ")? != first {
            anyhow::bail!("the two passwords differ; nothing was changed");
        }
        first
    } else {
        read_line()?
    };
    if !crate::domain::password::is_valid_for_account(&password) {
        anyhow::bail!(
            "a password must be {} to {} characters without control characters; nothing \
             was changed",
            crate::domain::password::MIN_ACCOUNT_CHARS,
            crate::domain::password::MAX_CHARS
        );
    }
    Ok(password)
}

/// Runs `read` with the terminal's echo off, restoring it after.
fn without_echo<T>(stdin: &std::io::Stdin, read: impl FnOnce() -> T) -> T {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let Ok(saved) = tcgetattr(stdin) else {
        return read();
    };
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    let _ = tcsetattr(stdin, OptionalActions::Now, &quiet);
    let result = read();
    let _ = tcsetattr(stdin, OptionalActions::Now, &saved);
    result
}

async fn run_keys(command: KeysCommand, config: &Config) -> anyhow::Result<()> {
    let stores = app::open_stores(config).await?;
    match command {
        KeysCommand::Create {
            user,
            name,
            admin,
            expires_at,
        } => {
            let expires_at = expires_at
                .map(|text| parse_future_time("--expires-at", &text))
                .transpose()?;
            let (user, label) = match user {
                Some(user_name) => {
                    if admin {
                        anyhow::bail!(
                            "--admin applies to new users; with --user the key takes that user's role"
                        );
                    }
                    let user = find_user(&stores, &user_name).await?;
                    let label = name.unwrap_or_else(|| "default".into());
                    (user, label)
                }
                None => {
                    let Some(user_name) = name else {
                        anyhow::bail!(
                            "give --user USER (an existing user) or --name NAME (a user to find or create)"
                        );
                    };
                    validate_name("--name", &user_name)?;
                    let user = match stores.keys.user_by_name(&user_name).await? {
                        Some(user) if admin && !user.admin => anyhow::bail!(
                            "user `{user_name}` exists and is not an admin; an admin key needs an admin user"
                        ),
                        Some(user) => user,
                        None => stores.keys.insert_user(&user_name, admin).await?,
                    };
                    (user, "default".to_owned())
                }
            };
            validate_name("--name", &label)?;
            let (stored, secret) = app::issue_key(&stores, &user, &label, expires_at).await?;
            println!(
                "Created key `{}` for {} `{}` (prefix {}). It is shown once; store it now:",
                stored.name,
                stored.user.role(),
                stored.user.name,
                stored.prefix
            );
            println!("{secret}");
        }
        KeysCommand::List { user } => {
            let owner = match user {
                Some(name) => Some(find_user(&stores, &name).await?.id),
                None => None,
            };
            let now = now_ms();
            println!(
                "{:<13} {:<20} {:<20} {:<6} {:<8} {:<24} EXPIRES",
                "PREFIX", "LABEL", "USER", "ROLE", "STATE", "CREATED"
            );
            for key in stores.keys.list_keys(owner).await? {
                let state = if key.revoked {
                    "revoked"
                } else if !key.is_usable(now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<13} {:<20} {:<20} {:<6} {state:<8} {:<24} {}",
                    key.prefix,
                    key.name,
                    key.user.name,
                    key.user.role(),
                    format_ms(key.created_at),
                    key.expires_at.map_or_else(|| "never".to_owned(), format_ms)
                );
            }
        }
        KeysCommand::Revoke { prefix } => {
            if !stores.keys.revoke_key(&prefix).await? {
                anyhow::bail!("no active key with prefix `{prefix}` (see `hop keys list`)");
            }
            app::notify_cluster(config, &[Change::Keys]).await;
            println!("Revoked key {prefix}; requests with it now get 401.");
        }
    }
    Ok(())
}

async fn run_domains(command: DomainsCommand, config: &Config) -> anyhow::Result<()> {
    let stores = app::open_stores(config).await?;
    let default_host = config.default_host().map_err(anyhow::Error::msg)?;
    // The name as the server stores it; the default host is not a registered domain.
    let registrable = |name: &str| -> anyhow::Result<DomainName> {
        let refuse_default = || {
            anyhow::anyhow!(
                "`{default_host}` is the default domain (the host of base_url); it is always served"
            )
        };
        if name.eq_ignore_ascii_case(&default_host) {
            return Err(refuse_default());
        }
        let parsed = DomainName::parse(name)
            .map_err(|e| anyhow::anyhow!("`{name}` is not a valid domain name: {e}"))?;
        if parsed.as_str() == default_host {
            return Err(refuse_default());
        }
        Ok(parsed)
    };
    match command {
        DomainsCommand::Add { name } => {
            let name = registrable(&name)?;
            match stores.domains.insert_domain(name.as_str()).await {
                Err(StoreError::Conflict) => {
                    anyhow::bail!("domain `{}` is already registered", name.as_str())
                }
                other => other?,
            };
            app::notify_cluster(config, &[Change::Domains]).await;
            println!("Added domain `{}`. Point its DNS at hop.", name.as_str());
        }
        DomainsCommand::List => {
            let counts: std::collections::HashMap<String, u64> =
                stores.domains.link_counts().await?.into_iter().collect();
            let count = |domain: &str| counts.get(domain).copied().unwrap_or(0);
            println!("{:<40} {:>8}  CREATED", "DOMAIN", "LINKS");
            println!("{:<40} {:>8}  (default)", default_host, count(""));
            for domain in stores.domains.list_domains().await? {
                println!(
                    "{:<40} {:>8}  {}",
                    domain.name,
                    count(&domain.name),
                    format_ms(domain.created_at)
                );
            }
        }
        DomainsCommand::Remove { name } => {
            let name = registrable(&name)?;
            match stores.domains.remove_domain(name.as_str()).await? {
                DomainRemoval::Removed => {
                    app::notify_cluster(config, &[Change::Domains]).await;
                    println!("Removed domain `{}`.", name.as_str());
                }
                DomainRemoval::NotFound => anyhow::bail!(
                    "no domain `{}` is registered (see `hop domains list`)",
                    name.as_str()
                ),
                DomainRemoval::InUse(links) => anyhow::bail!(
                    "domain `{}` still has {links} link(s); delete them first",
                    name.as_str()
                ),
            }
        }
    }
    Ok(())
}

async fn run_links(command: LinksCommand, config: &Config) -> anyhow::Result<()> {
    // The same state the server builds, so that creates take exactly the API's path
    // (validation, code allocation, group commit).
    let (state, background) = app::build(config).await?;
    let result = links_command(command, &state, config).await;
    background.stop().await;
    result
}

/// The user called `name`, or an error that says how to add one.
async fn find_user(stores: &Stores, name: &str) -> anyhow::Result<User> {
    stores.keys.user_by_name(name).await?.ok_or_else(|| {
        anyhow::anyhow!("no user named `{name}`; add one with `hop users add {name}`")
    })
}

/// The site `--domain` names (none: the default domain).
fn site_option(state: &crate::http::AppState, domain: Option<&str>) -> anyhow::Result<Site> {
    match domain {
        None => Ok(Site::Default),
        Some(name) => state.hosts.site_for_name(name).ok_or_else(|| {
            anyhow::anyhow!("domain `{name}` is not registered (see `hop domains list`)")
        }),
    }
}

fn print_link(link: &Link, settings: &crate::http::Settings) {
    println!("code:         {}", link.code);
    if !link.domain.is_empty() {
        println!("domain:       {}", link.domain);
    }
    println!("url:          {}", link.url);
    if let Some(title) = &link.title {
        println!("title:        {title}");
    }
    println!("clicks:       {}", link.clicks);
    println!("created:      {}", format_ms(link.created_at));
    if let Some(at) = link.expires_at {
        println!("expires:      {}", format_ms(at));
    }
    if let Some(max) = link.max_clicks {
        println!("max clicks:   {max}");
    }
    println!("redirect:     {}", link.redirect.code());
    match (&link.disabled_reason, link.disabled) {
        (Some(reason), _) => println!("disabled:     by an admin: {reason}"),
        (None, true) => println!("disabled:     yes"),
        (None, false) => {}
    }
    if !link.tags.is_empty() {
        println!("tags:         {}", link.tags.join(", "));
    }
    println!("{}", settings.short_url(&link.domain, &link.code));
}

async fn links_command(
    command: LinksCommand,
    state: &crate::http::AppState,
    config: &Config,
) -> anyhow::Result<()> {
    let settings = &state.settings;
    match command {
        LinksCommand::Create {
            url,
            user,
            alias,
            title,
            expires_at,
            max_clicks,
            redirect_type,
            tags,
            domain,
        } => {
            let owner = find_user(&state.stores, &user).await?;
            let site = site_option(state, domain.as_deref())?;
            let request = LinkRequest {
                url,
                alias,
                title,
                expires_at,
                max_clicks,
                redirect_type,
                tags: Some(tags),
                password: None,
            };
            let link = crate::http::links::create(state, Some(owner.id), site, request)
                .await
                .map_err(|error| anyhow::anyhow!("{}", error.public_detail()))?;
            print_link(&link, settings);
        }
        LinksCommand::List {
            user,
            query,
            tag,
            limit,
        } => {
            if !(1..=1000).contains(&limit) {
                anyhow::bail!("--limit must be 1 to 1000");
            }
            let owner = match user {
                Some(name) => Some(find_user(&state.stores, &name).await?.id),
                None => None,
            };
            let tag = match tag {
                Some(tag) => Some(
                    valid_tags(vec![tag.clone()])
                        .map_err(|_| anyhow::anyhow!("`{tag}` is not a valid tag"))?
                        .remove(0),
                ),
                None => None,
            };
            let links = state
                .stores
                .links
                .list_links(LinkQuery {
                    owner,
                    text: query.filter(|q| !q.is_empty()),
                    tag,
                    limit,
                    ..LinkQuery::default()
                })
                .await?;
            println!(
                "{:<16} {:<24} {:>8}  {:<24} URL",
                "CODE", "DOMAIN", "CLICKS", "CREATED"
            );
            for link in links {
                let domain = if link.domain.is_empty() {
                    "(default)"
                } else {
                    link.domain.as_str()
                };
                println!(
                    "{:<16} {:<24} {:>8}  {:<24} {}",
                    link.code,
                    domain,
                    link.clicks,
                    format_ms(link.created_at),
                    link.url
                );
            }
        }
        LinksCommand::Get { code, domain } => {
            let site = site_option(state, domain.as_deref())?;
            let link = state
                .stores
                .links
                .link_by_code(site.as_str(), &code)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no link with code `{code}`"))?;
            print_link(&link, settings);
        }
        LinksCommand::Delete { code, domain } => {
            let site = site_option(state, domain.as_deref())?;
            let link = state
                .stores
                .links
                .link_by_code(site.as_str(), &code)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no link with code `{code}`"))?;
            state.stores.links.delete_link(link.id).await?;
            let change = Change::Link {
                domain: link.domain,
                code: link.code,
            };
            app::notify_cluster(config, &[change]).await;
            println!("Deleted {code}.");
        }
        LinksCommand::Disable {
            code,
            reason,
            domain,
        } => {
            let request = PatchRequest {
                disabled_reason: Some(Some(reason)),
                ..PatchRequest::default()
            };
            let link = change_link(state, config, &code, domain.as_deref(), request).await?;
            print_link(&link, settings);
        }
        LinksCommand::Enable { code, domain } => {
            let request = PatchRequest {
                disabled: Some(false),
                ..PatchRequest::default()
            };
            let link = change_link(state, config, &code, domain.as_deref(), request).await?;
            print_link(&link, settings);
        }
    }
    Ok(())
}

/// Applies a change validated as the API validates it to the link `code`, and tells
/// the nodes of a cluster.
async fn change_link(
    state: &crate::http::AppState,
    config: &Config,
    code: &str,
    domain: Option<&str>,
    request: PatchRequest,
) -> anyhow::Result<Link> {
    let site = site_option(state, domain)?;
    let changes = request.validate(&state.settings.url_policy, now_ms())?;
    let link = state
        .stores
        .links
        .link_by_code(site.as_str(), code)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no link with code `{code}`"))?;
    let link = state
        .stores
        .links
        .update_link(link.id, changes)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no link with code `{code}`"))?;
    let change = Change::Link {
        domain: link.domain.clone(),
        code: link.code.clone(),
    };
    app::notify_cluster(config, &[change]).await;
    Ok(link)
}

fn parse_future_time(flag: &str, text: &str) -> anyhow::Result<UnixMillis> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            anyhow::anyhow!("{flag} `{text}` is not an RFC 3339 time such as 2030-01-31T00:00:00Z")
        })?;
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
    if ms <= now_ms() {
        anyhow::bail!("{flag} `{text}` is not in the future");
    }
    Ok(ms)
}

async fn run_worker(config: &Config, listen: Option<&str>) -> anyhow::Result<()> {
    let Some(settings) = config.stream_settings() else {
        anyhow::bail!(
            "hop worker needs nats_url (HOP_NATS_URL or --nats-url): the stream it stores"
        );
    };
    if !config.analytics_enabled {
        anyhow::bail!("analytics_enabled is false: there are no visits for hop worker to store");
    }
    let status = match listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?,
        ),
        None => None,
    };
    let stores = app::open_stores(config).await?;
    let worker = crate::stream::worker::Worker {
        settings,
        store: stores.analytics.clone(),
        meta: stores.meta.clone(),
        enricher: Arc::new(app::enricher(config)?),
        keep_raw: config.analytics_raw_retention_days > 0,
        status,
        metrics: Default::default(),
    };
    worker.run(app::shutdown_signal()).await
}

fn load_config(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    Ok(Config::load(file, std::env::vars(), overrides)?)
}

/// The configuration for a command other than `serve`: the same, but without the
/// start-up integrity check, which is the server's (seconds on a big database, for
/// every `hop keys list`); `hop check` is the full one on demand.
fn command_config(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let mut config = load_config(file, overrides)?;
    config.startup_check_max_ms = 0;
    Ok(config)
}

fn validate_name(what: &str, name: &str) -> anyhow::Result<()> {
    let length = name.chars().count();
    if name.trim().is_empty() || length > 64 || name.chars().any(char::is_control) {
        anyhow::bail!("{what} must be 1 to 64 characters without control characters");
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
