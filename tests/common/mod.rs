//! Shared test harness: a real hop server on a loopback port with a temporary data
//! directory, driven over HTTP, plus helpers to run the `hop` binary itself.
//!
//! One story, two stores: with `HOP_TEST_DATABASE_URL` set to a PostgreSQL server
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`), every [`data_dir`] also gets a
//! fresh database of its own, created from that URL and dropped with the directory,
//! and every server and CLI run of the test uses it. Unset, tests use SQLite.

#![allow(dead_code)]

use hop::config::{Config, Overrides};
use reqwest::redirect::Policy;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The variable that runs the suite against PostgreSQL (see the module docs).
pub const TEST_DATABASE_VAR: &str = "HOP_TEST_DATABASE_URL";
/// Where a data directory records the database of its test.
const DATABASE_MARKER: &str = "test-database-url";

/// A temporary data directory, with its own PostgreSQL database when the suite runs
/// against PostgreSQL.
pub struct TestDir {
    /// Dropped first (fields drop in order): the database, then the directory.
    database: Option<TestDatabase>,
    dir: TempDir,
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The test's PostgreSQL database, if the suite runs against PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|db| db.url.as_str())
    }
}

/// The variable that starts every SQLite test store at an older schema version, so
/// that the suite runs on stores migrated from it (`HOP_TEST_SQLITE_SCHEMA=6`).
pub const TEST_SCHEMA_VAR: &str = "HOP_TEST_SQLITE_SCHEMA";

/// A fresh data directory (and database, see the module docs).
pub fn data_dir() -> TestDir {
    let dir = tempfile::tempdir().unwrap();
    let database = std::env::var(TEST_DATABASE_VAR)
        .ok()
        .filter(|url| !url.is_empty())
        .map(|admin_url| TestDatabase::create(&admin_url));
    match &database {
        Some(database) => std::fs::write(dir.path().join(DATABASE_MARKER), &database.url).unwrap(),
        None => {
            if let Some(version) = std::env::var(TEST_SCHEMA_VAR)
                .ok()
                .filter(|v| !v.is_empty())
            {
                let version = version.parse().expect("HOP_TEST_SQLITE_SCHEMA is a number");
                hop::store::sqlite::SqliteStore::create_at_version(
                    &dir.path().join("hop.db"),
                    version,
                )
                .unwrap();
            }
        }
    }
    TestDir { database, dir }
}

/// The machine's PostgreSQL, for tests that need a shared database whatever the
/// suite runs on (the cluster tests): `HOP_TEST_DATABASE_URL` when set, else this.
pub const MACHINE_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh data directory with a fresh PostgreSQL database of its own, on
/// `HOP_TEST_DATABASE_URL` or else [`MACHINE_POSTGRES`], dropped with it.
pub fn postgres_data_dir() -> TestDir {
    let dir = tempfile::tempdir().unwrap();
    let admin_url = std::env::var(TEST_DATABASE_VAR)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| MACHINE_POSTGRES.to_owned());
    let database = TestDatabase::create(&admin_url);
    std::fs::write(dir.path().join(DATABASE_MARKER), &database.url).unwrap();
    TestDir {
        database: Some(database),
        dir,
    }
}

/// Whether the suite runs against PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(TEST_DATABASE_VAR).is_ok_and(|url| !url.is_empty())
}

/// The environment that points hop at a data directory's database (none on SQLite).
pub fn database_env(data_dir: &Path) -> Vec<(String, String)> {
    match std::fs::read_to_string(data_dir.join(DATABASE_MARKER)) {
        Ok(url) => vec![("HOP_DATABASE_URL".to_owned(), url)],
        Err(_) => Vec::new(),
    }
}

/// A PostgreSQL database made for one test, dropped (with any connection still open
/// to it) when the test ends.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    fn create(admin_url: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("hop_test_{}_{n}_{nanos}", std::process::id());
        pg_execute(admin_url, &format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(admin_url).expect("HOP_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        pg_execute(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `work` on a connection to `url` on a thread of its own, so that it can be
/// called from sync code, async tests and `Drop` alike.
fn on_pg<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(
        tokio_postgres::Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
    + Send
    + 'static,
) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("test database {url}: {e}"));
            tokio::spawn(connection);
            work(client).await
        })
    })
    .join()
    .unwrap()
}

/// Runs `sql` on the PostgreSQL database at `url`.
pub fn pg_execute(url: &str, sql: &str) {
    let sql = sql.to_owned();
    on_pg(url, move |client| {
        Box::pin(async move {
            client.batch_execute(&sql).await.unwrap();
        })
    })
}

/// Bytes of everything stored: on SQLite the database file and its log; on
/// PostgreSQL every row of every table as text, plus the raw bytes of visit blocks.
pub fn stored_bytes(data_dir: &Path) -> Vec<u8> {
    if let Some((_, url)) = database_env(data_dir).pop() {
        return on_pg(&url, |client| {
            Box::pin(async move {
                let mut bytes = Vec::new();
                let tables = client
                    .query(
                        "SELECT quote_ident(table_name) FROM information_schema.tables \
                         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                        &[],
                    )
                    .await
                    .unwrap();
                for table in tables {
                    let table: String = table.get(0);
                    for row in client
                        .query(&format!("SELECT t::text FROM {table} t"), &[])
                        .await
                        .unwrap()
                    {
                        bytes.extend(row.get::<_, String>(0).into_bytes());
                    }
                }
                for row in client
                    .query("SELECT data FROM visit_blocks", &[])
                    .await
                    .unwrap()
                {
                    bytes.extend(row.get::<_, Vec<u8>>(0));
                }
                bytes
            })
        });
    }
    let mut bytes = Vec::new();
    for file in ["hop.db", "hop.db-wal"] {
        bytes.extend(std::fs::read(data_dir.join(file)).unwrap_or_default());
    }
    bytes
}

/// A server running inside the test process.
pub struct TestServer {
    pub base: String,
    pub admin_key: String,
    pub state: hop::http::AppState,
    pub client: reqwest::Client,
    pub dir: TestDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A config for tests: loopback, temporary data dir (and its database), quick click
/// flushes.
pub fn test_config(dir: &Path, extra_env: &[(&str, &str)]) -> Config {
    let mut env = vec![
        ("HOP_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("HOP_CLICK_FLUSH_INTERVAL_MS".to_owned(), "100".to_owned()),
    ];
    env.extend(database_env(dir));
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let overrides = Overrides {
        data_dir: Some(dir.to_owned()),
        ..Overrides::default()
    };
    Config::load(None, env, &overrides).expect("test config")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra_env: &[(&str, &str)]) -> Self {
        let dir = data_dir();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut config = test_config(dir.path(), extra_env);
        config.base_url = format!("http://{address}");
        let (state, background) = hop::app::build(&config).await.unwrap();
        let admin_key = create_key(&state, "admin", true).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hop::app::run_server(
            state.clone(),
            background,
            listener,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        Self {
            base: format!("http://{address}"),
            admin_key,
            state,
            client: client(),
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server gracefully (flushing clicks) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/links` with `body` as the admin.
    pub async fn create(&self, body: serde_json::Value) -> reqwest::Response {
        self.create_as(&self.admin_key, body).await
    }

    pub async fn create_as(&self, key: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/links"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a link and returns its JSON, asserting 201.
    pub async fn create_ok(&self, body: serde_json::Value) -> serde_json::Value {
        let response = self.create(body).await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The JSON `key` gets from `GET path`.
    pub async fn get_json_as(&self, key: &str, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn get_link(&self, code: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/v1/links/{code}")))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap()
    }

    /// Rows in the links table, read straight from the database.
    pub fn link_rows(&self) -> i64 {
        count_rows(self.dir.path(), "SELECT COUNT(*) FROM links")
    }
}

/// Adds a user called `name` (an admin if asked) and returns a new key of theirs.
pub async fn create_key(state: &hop::http::AppState, name: &str, admin: bool) -> String {
    let user = state.stores.keys.insert_user(name, admin).await.unwrap();
    let (_, secret) = hop::app::issue_key(&state.stores, &user, "test", None)
        .await
        .unwrap();
    secret
}

/// The one integer `sql` selects, read straight from a data directory's database
/// (SQLite or PostgreSQL): write it in SQL both understand, e.g. `CAST(SUM(x) AS BIGINT)`.
pub fn count_rows(data_dir: &Path, sql: &str) -> i64 {
    if let Some((_, url)) = database_env(data_dir).pop() {
        let sql = sql.to_owned();
        return on_pg(&url, move |client| {
            Box::pin(async move {
                let row = client
                    .query_one(&sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                row.get::<_, Option<i64>>(0).unwrap_or(0)
            })
        });
    }
    sqlite(data_dir)
        .query_row(sql, [], |row| row.get::<_, Option<i64>>(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or(0)
}

/// A connection to a data directory's SQLite store that waits out the server's
/// writes (a checkpoint holds its lock for a moment) instead of failing with "locked".
fn sqlite(data_dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(data_dir.join("hop.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// Runs `sql` (statements separated by `;`) on `data_dir`'s store.
pub fn execute_sql(data_dir: &Path, sql: &str) {
    if let Some((_, url)) = database_env(data_dir).pop() {
        let sql = sql.to_owned();
        return on_pg(&url, move |client| {
            Box::pin(async move {
                client
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            })
        });
    }
    sqlite(data_dir)
        .execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A new admin key (user `ops`) made with `hop keys create` on `data_dir`'s store.
pub fn admin_key(data_dir: &Path) -> String {
    let output = hop_command()
        .args(["keys", "create", "--name", "ops", "--admin", "--data-dir"])
        .arg(data_dir)
        .envs(database_env(data_dir))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().last().unwrap().to_owned()
}

/// Waits until `check` holds, up to `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The `hop` binary built for these tests.
pub fn hop_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hop"))
}

/// A command running the `hop` binary. The suite's own variables are not passed on:
/// hop refuses `HOP_*` variables it does not know.
pub fn hop_command() -> Command {
    let mut command = Command::new(hop_binary());
    command
        .env_remove(TEST_DATABASE_VAR)
        .env_remove(TEST_SCHEMA_VAR)
        .env_remove(TEST_BROWSER_VAR);
    command
}

/// The variable that makes tests/browser.rs fail, instead of passing with a note, when
/// Chromium or playwright-core is missing (`.ci/run` sets it).
pub const TEST_BROWSER_VAR: &str = "HOP_TEST_BROWSER";

/// A `hop serve` child process.
pub struct HopProcess {
    pub child: Child,
    pub base: String,
    /// Everything the process has written to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    stdout: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl HopProcess {
    /// Starts `hop serve` on a free port with JSON logs and waits until it serves.
    pub fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        Self::start_command(hop_command(), data_dir, extra_env)
    }

    /// Like [`HopProcess::start`], with the open-file limit (soft and hard) set to
    /// `file_limit` by the shell that execs hop.
    pub fn start_with_file_limit(
        data_dir: &Path,
        extra_env: &[(&str, &str)],
        file_limit: u64,
    ) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {file_limit} && exec \"$0\" \"$@\""))
            .arg(hop_binary())
            .env_remove(TEST_DATABASE_VAR)
            .env_remove(TEST_SCHEMA_VAR)
            .env_remove(TEST_BROWSER_VAR);
        Self::start_command(command, data_dir, extra_env)
    }

    /// Runs `command` with `serve … --data-dir DIR` appended: `hop` itself, or a wrapper
    /// that ends by `exec`ing its arguments.
    pub fn start_command(
        mut command: Command,
        data_dir: &Path,
        extra_env: &[(&str, &str)],
    ) -> Self {
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("HOP_CLICK_FLUSH_INTERVAL_MS", "100")
            .envs(database_env(data_dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning hop");
        let stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        for line in stdout.by_ref() {
            let line = line.unwrap();
            if line.contains("hop is serving") {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                base = Some(format!("http://{}", value["listen"].as_str().unwrap()));
                break;
            }
        }
        let Some(base) = base else {
            let _ = child.kill();
            stderr_thread.join().unwrap();
            panic!("hop did not start: {}", stderr.lock().unwrap().join("\n"))
        };
        let stdout = std::thread::spawn(move || stdout.map_while(Result::ok).collect::<Vec<_>>());
        Self {
            child,
            base,
            stderr,
            stderr_thread: Some(stderr_thread),
            stdout: Some(stdout),
        }
    }

    /// The stderr lines so far, waiting briefly for at least `min` of them.
    pub fn stderr_lines(&self, min: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let lines = self.stderr.lock().unwrap().clone();
            if lines.len() >= min || start.elapsed() > Duration::from_secs(5) {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/links` with `key`; asserts 201 and returns the link.
    pub async fn create_link(&self, key: &str, body: serde_json::Value) -> serde_json::Value {
        let response = client()
            .post(self.url("/api/v1/links"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit and returns (success, stdout lines, stderr lines).
    pub fn wait(mut self) -> (bool, Vec<String>, Vec<String>) {
        let status = self.child.wait().unwrap();
        let stdout = self.stdout.take().unwrap().join().unwrap();
        self.stderr_thread.take().unwrap().join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (status.success(), stdout, stderr)
    }
}

impl Drop for HopProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, on a free
/// port), which the test may stop and start at will; never the machine's server.
/// Stopped when dropped.
pub struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Run the server's tools as this user (initdb refuses root).
    user: Option<String>,
}

impl PrivatePostgres {
    /// Creates and starts one, or `None` (with the reason) if this machine has no
    /// PostgreSQL server binaries.
    pub fn start() -> Result<Self, String> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
            .collect();
        versions.sort();
        let bin = versions
            .pop()
            .ok_or("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")?;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let user = root.then(|| "postgres".to_owned());
        let dir = tempfile::tempdir().unwrap();
        if let Some(user) = &user {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the private server's directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            dir,
            bin,
            port,
            user,
        };
        let data = server.dir.path().join("data");
        let output = server
            .tool("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        server.resume();
        Ok(server)
    }

    /// A streaming replica of this server (pg_basebackup into a directory of its
    /// own, on another free port), started.
    pub fn start_replica(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if let Some(user) = &self.user {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let replica = Self {
            dir,
            bin: self.bin.clone(),
            port,
            user: self.user.clone(),
        };
        let output = replica
            .tool("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg("-D")
            .arg(replica.dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        replica.resume();
        replica
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "starting the private PostgreSQL");
    }

    /// The server's processes: the postmaster and its children.
    fn processes(&self) -> Vec<String> {
        let pid_file = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .expect("the private server runs");
        let main = pid_file.lines().next().unwrap().trim().to_owned();
        let children = Command::new("pgrep").args(["-P", &main]).output().unwrap();
        let mut pids = vec![main];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        pids
    }

    /// Freezes the server (SIGSTOP to every process of it): connections stay open and
    /// nothing answers, as with a hung host or a full network buffer.
    pub fn freeze(&self) {
        let status = Command::new("kill")
            .arg("-STOP")
            .args(self.processes())
            .status()
            .unwrap();
        assert!(status.success(), "freezing the private PostgreSQL");
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) {
        let status = Command::new("kill")
            .arg("-CONT")
            .args(self.processes())
            .status()
            .unwrap();
        assert!(status.success(), "thawing the private PostgreSQL");
    }

    /// From now on TCP connections must give `password` (SCRAM) for `postgres`.
    pub fn require_password(&self, password: &str) {
        let data = self.dir.path().join("data");
        let sql = format!("ALTER USER postgres PASSWORD '{password}'");
        let status = self
            .tool("psql")
            .args(["-h", &self.dir.path().display().to_string()])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-qc", &sql])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "setting the password");
        let hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let status = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("reload")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "reloading pg_hba.conf");
    }

    /// Stops the server at once (as a crash would), closing every connection.
    pub fn halt(&self) {
        // A frozen server (a test that failed before thawing it) would ignore the stop.
        if self.dir.path().join("data/postmaster.pid").exists() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .args(self.processes())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A free loopback port (bound once and released: another process could take it
/// first, which the callers' start-up checks would show).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `<pid><sep><n><sep><nanoseconds within the second>`: a name part no other test of
/// this run, or of another run, uses (for Redis prefixes, NATS streams).
pub fn unique_id(sep: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}{sep}{n}{sep}{nanos}", std::process::id())
}

/// A sample of `/metrics` at `base` (exact name and labels), 0 if absent.
pub async fn metric_at(base: &str, series: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A server of the test's own (`redis-server`, `nats-server`) on a free port with a
/// temporary directory that outlives restarts; killed when dropped. Never the
/// machine's server.
pub struct PrivateServer {
    pub port: u16,
    pub dir: TempDir,
    program: &'static str,
    args: fn(u16, &Path) -> Vec<String>,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts `program` with `args(port, dir)` and waits until it accepts connections.
    pub fn start(program: &'static str, args: fn(u16, &Path) -> Vec<String>) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            program,
            args,
            child: None,
        };
        server.resume();
        server
    }

    /// Starts the server (again, on the same port and directory) and waits until it
    /// answers.
    pub fn resume(&mut self) {
        let child = Command::new(self.program)
            .args((self.args)(self.port, self.dir.path()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} (apt-get install it): {e}", self.program));
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the private {} did not start",
                self.program
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the server a signal (`STOP` freezes it: it keeps its connections and
    /// answers nothing; `CONT` thaws it).
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the private server runs");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the server at once (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen server must be thawed to die.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `hop worker` child process, its log in `log`; killed when dropped.
pub struct WorkerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of its status endpoints, when started with them.
    pub status: Option<String>,
}

impl WorkerProcess {
    pub fn start(env: &[(String, String)], log: &Path) -> Self {
        Self::spawn(env, log, None)
    }

    /// Also answering /healthz, /readyz and /metrics (`--listen`) on a free port.
    pub fn start_with_status(env: &[(String, String)], log: &Path) -> Self {
        Self::spawn(env, log, Some(free_port()))
    }

    fn spawn(env: &[(String, String)], log: &Path, port: Option<u16>) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let mut command = hop_command();
        command.args(["worker", "--log-format", "json"]);
        if let Some(port) = port {
            command.args(["--listen", &format!("127.0.0.1:{port}")]);
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning hop worker");
        Self {
            child,
            status: port.map(|port| format!("http://127.0.0.1:{port}")),
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().success()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Deletes a JetStream stream (a test's own, on the machine's NATS), from any context:
/// on a thread of its own with its own runtime, so `Drop` can call it.
pub fn delete_stream(nats_url: &str, stream: &str) {
    let (url, stream) = (nats_url.to_owned(), stream.to_owned());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok(client) = async_nats::connect(url.as_str()).await {
                let _ = async_nats::jetstream::new(client)
                    .delete_stream(&stream)
                    .await;
            }
        });
    })
    .join();
}
