//! The dashboard in a real browser: Debian's Chromium, driven by playwright-core
//! (tests/browser/dashboard.mjs) against the real `hop serve` on a fresh data
//! directory, from the first start's password link on. Screenshots of the main pages
//! go to docs/screenshots/.
//!
//! Needs `chromium` (or `CHROMIUM=/path`), `node`, and `npm ci --prefix tests/browser`.
//! Without them the test says what is missing and passes, unless
//! `HOP_TEST_BROWSER=1`, which `.ci/run` sets after installing them: then it fails.

mod common;

use common::HopProcess;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the browser test needs, or what is missing.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} not found (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node not found".into());
    }
    let package = root.join("tests/browser/node_modules/playwright-core");
    if !package.exists() {
        return Err("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    Ok((chromium, root.join("tests/browser/dashboard.mjs")))
}

#[tokio::test]
async fn the_dashboard_works_in_chromium() {
    let required = std::env::var("HOP_TEST_BROWSER").is_ok_and(|v| v == "1");
    let (chromium, script) = match tools() {
        Ok(tools) => tools,
        Err(missing) if required => panic!("HOP_TEST_BROWSER=1 but {missing}"),
        Err(missing) => {
            eprintln!(
                "the_dashboard_works_in_chromium: not run, {missing}; .ci/run installs it \
                 and sets HOP_TEST_BROWSER=1"
            );
            return;
        }
    };
    let dir = common::data_dir();
    let server = HopProcess::start(dir.path(), &[]);
    let lines = server.stderr_lines(4);
    let setup_link = lines
        .iter()
        .find(|line| line.contains("/app/setup/"))
        .unwrap_or_else(|| panic!("no password link printed: {lines:?}"))
        .clone();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let base = server.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("HOP_URL", base)
            .env("HOP_SETUP_LINK", setup_link)
            .env("HOP_SHOTS", shots)
            .env("CHROMIUM", chromium)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("dashboard browser test: ok"), "{stdout}");
    server.signal("TERM");
    assert!(server.wait().0);
}
