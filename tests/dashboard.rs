//! The web dashboard (`/app`) over HTTP, as a browser would use it without script:
//! passwords set with `hop users passwd`, sign-in and its limits, the session cookie,
//! CSRF and Origin checks on every form, escaping of what users typed, ownership, idle
//! sessions and sign-out. (tests/browser.rs drives the same pages in Chromium.)

mod common;

use common::{TestServer, create_key, database_env, hop_command};
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::json;
use std::io::Write;
use std::process::Stdio;

/// Runs `hop users ARGS` on the server's store, with `stdin` as input. Off the test's
/// runtime thread: the server under test runs on it, and the command may wait for it
/// (on PostgreSQL, for a lock the server's start-up maintenance holds for a moment).
async fn users(server: &TestServer, args: &[&str], stdin: &str) -> std::process::Output {
    let mut command = hop_command();
    command
        .arg("users")
        .args(args)
        .arg("--data-dir")
        .arg(server.dir.path())
        .envs(database_env(server.dir.path()))
        // The server's address, as a shared configuration would give it.
        .env("HOP_BASE_URL", &server.base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// A user with a password, set through the CLI.
async fn user_with_password(server: &TestServer, name: &str, password: &str) {
    let added = users(server, &["add", name], "").await;
    assert!(added.status.success(), "{added:?}");
    let set = users(server, &["passwd", name], &format!("{password}\n")).await;
    assert!(set.status.success(), "{set:?}");
}

/// The browser side: one cookie jar's worth (the session cookie) by hand, so that each
/// test says exactly what it sends.
struct Browser<'a> {
    server: &'a TestServer,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            cookie: None,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = &self.cookie {
            headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        headers
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.server
            .client
            .get(self.server.url(path))
            .headers(self.headers())
            .send()
            .await
            .unwrap()
    }

    /// Posts a form from one of hop's own pages (`Origin` is hop's).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_from(path, form, &self.server.base).await
    }

    async fn post_from(
        &self,
        path: &str,
        form: &[(&str, &str)],
        origin: &str,
    ) -> reqwest::Response {
        self.server
            .client
            .post(self.server.url(path))
            .headers(self.headers())
            .header(header::ORIGIN, origin)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Signs in; returns the answer (the cookie is kept when one is set).
    async fn sign_in(&mut self, name: &str, password: &str) -> reqwest::Response {
        let response = self
            .post("/app/login", &[("name", name), ("password", password)])
            .await;
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        response
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await.text().await.unwrap();
        let start = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with a token")
            + 19;
        page[start..start + 32].to_owned()
    }
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()[header::LOCATION].to_str().unwrap()
}

#[tokio::test]
async fn sign_in_create_list_and_sign_out() {
    let server = TestServer::start().await;
    user_with_password(&server, "alice", "correct horse").await;
    let mut browser = Browser::new(&server);

    // Not signed in: every page sends the browser to the sign-in page.
    for path in ["/app", "/app/links", "/app/links/new"] {
        let response = browser.get(path).await;
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(location(&response), "/app/login", "{path}");
    }
    let page = browser.get("/app/login").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        !page.text().await.unwrap().contains("<script>"),
        "no inline script"
    );

    // A wrong password, an unknown name: the same answer, no cookie.
    for (name, password) in [("alice", "wrong horse"), ("nobody", "correct horse")] {
        let refused = browser.sign_in(name, password).await;
        assert_eq!(refused.status(), 401);
        assert!(refused.headers().get(header::SET_COOKIE).is_none());
        assert!(
            refused
                .text()
                .await
                .unwrap()
                .contains("Wrong name or password.")
        );
    }

    let signed_in = browser.sign_in("alice", "correct horse").await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(location(&signed_in), "/app/links");
    let cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/app"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "base_url is http: {cookie}");
    // The store keeps only the token's hash.
    let token = browser
        .cookie
        .as_ref()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    // Through the server's own store: no second connection to a store it is using.
    let hash = token_hash(&token);
    let session = server.state.stores.sessions.session(&hash).await.unwrap();
    assert_eq!(session.expect("the session is stored").user.name, "alice");
    let stored_bytes = common::stored_bytes(server.dir.path());
    assert!(
        !stored_bytes
            .windows(token.len())
            .any(|w| w == token.as_bytes()),
        "the session token is not stored"
    );

    // Create a link whose title and tags carry markup.
    let csrf = browser.csrf("/app/links/new").await;
    let title = "<script>alert('title')</script>";
    let created = browser
        .post(
            "/app/links/new",
            &[
                ("csrf", &csrf),
                ("url", "https://example.com/from-the-dashboard?a=1&b=2"),
                ("alias", "dash-1"),
                ("title", title),
                ("tags", "launch, Spring 2027"),
            ],
        )
        .await;
    assert_eq!(created.status(), 201);
    let page = created.text().await.unwrap();
    assert!(page.contains(&format!("{}/dash-1", server.base)), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert('title')&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains(title), "the title is escaped");
    assert!(page.contains("/app/links/dash-1/qr.svg"));
    let redirect = server.get("/dash-1").await;
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        location(&redirect),
        "https://example.com/from-the-dashboard?a=1&b=2"
    );
    // It is alice's, as if she had used a key of hers.
    let alice_key = hop_key(&server, "alice").await;
    let link = server.get_json_as(&alice_key, "/api/v1/links/dash-1").await;
    assert_eq!(link["tags"], json!(["launch", "spring 2027"]));

    // A bad target: the form comes back filled in, with the reason; nothing stored.
    let links_before = server.link_rows();
    let refused = browser
        .post(
            "/app/links/new",
            &[
                ("csrf", &csrf),
                ("url", "ftp://example.com/x"),
                ("title", "kept"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 400);
    let page = refused.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(page.contains("value=\"ftp://example.com/x\""), "{page}");
    assert_eq!(server.link_rows(), links_before);

    // The list shows it, and searching finds it.
    let list = browser.get("/app/links?q=dashboard").await;
    assert_eq!(list.status(), 200);
    let page = list.text().await.unwrap();
    assert!(page.contains("dash-1") && page.contains("launch"), "{page}");
    assert!(!page.contains(title));
    let none = browser.get("/app/links?q=nothing-like-this").await;
    assert!(none.text().await.unwrap().contains("No links found."));
    let bad = browser.get("/app/links?tag=%21%21").await;
    assert_eq!(bad.status(), 200);
    assert!(bad.text().await.unwrap().contains("role=\"alert\""));

    // The QR code of her link; not of someone else's.
    let qr = browser.get("/app/links/dash-1/qr.svg").await;
    assert_eq!(qr.status(), 200);
    assert_eq!(qr.headers()[header::CONTENT_TYPE], "image/svg+xml");
    server
        .create_ok(json!({"url": "https://example.com/admins", "alias": "admins-own"}))
        .await;
    assert_eq!(
        browser.get("/app/links/admins-own/qr.svg").await.status(),
        404
    );
    let page = browser.get("/app/links").await.text().await.unwrap();
    assert!(
        !page.contains("admins-own"),
        "another user's link is not listed"
    );

    // Sign out: the session is gone, the old cookie no longer works.
    let csrf = browser.csrf("/app/links").await;
    let out = browser.post("/app/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(browser.get("/app/links").await.status(), 303);
    let session = server.state.stores.sessions.session(&hash).await.unwrap();
    assert!(session.is_none(), "the session is gone from the store");
}

/// The SHA-256 a session is stored under, from its cookie's hex token.
fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).unwrap())
        .collect();
    sha2::Sha256::digest(bytes).into()
}

/// A key of `name`'s, through the CLI (off the runtime thread, as [`users`]).
async fn hop_key(server: &TestServer, name: &str) -> String {
    let mut command = hop_command();
    command
        .args([
            "keys",
            "create",
            "--user",
            name,
            "--name",
            "test",
            "--data-dir",
        ])
        .arg(server.dir.path())
        .envs(database_env(server.dir.path()));
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn forms_without_the_token_or_from_elsewhere_change_nothing() {
    let server = TestServer::start().await;
    user_with_password(&server, "bob", "bob's password").await;
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in("bob", "bob's password").await.status(), 303);
    let csrf = browser.csrf("/app/links/new").await;
    let before = server.link_rows();
    let form = |token: &'static str| vec![("csrf", token), ("url", "https://example.com/csrf")];
    let missing = browser
        .post("/app/links/new", &[("url", "https://example.com/csrf")])
        .await;
    assert_eq!(
        missing.status(),
        400,
        "a form without its token is not a create"
    );
    let wrong = browser
        .post("/app/links/new", &form("0123456789abcdef0123456789abcdef"))
        .await;
    assert_eq!(wrong.status(), 403);
    assert!(wrong.text().await.unwrap().contains("Nothing was changed."));
    let good = [("csrf", csrf.as_str()), ("url", "https://example.com/csrf")];
    let elsewhere = browser
        .post_from("/app/links/new", &good, "https://evil.example")
        .await;
    assert_eq!(elsewhere.status(), 403);
    // Signing in from another site's page is refused too.
    let cross_sign_in = browser
        .post_from(
            "/app/login",
            &[("name", "bob"), ("password", "bob's password")],
            "https://evil.example",
        )
        .await;
    assert_eq!(cross_sign_in.status(), 403);
    assert_eq!(server.link_rows(), before);
    // The same form from hop's own page works.
    assert_eq!(browser.post("/app/links/new", &good).await.status(), 201);
    // Sign-out needs the token as well.
    let out = browser.post("/app/logout", &[("csrf", "nope")]).await;
    assert_eq!(out.status(), 403);
    assert_eq!(browser.get("/app/links").await.status(), 200);
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_account() {
    let server = TestServer::start().await;
    user_with_password(&server, "carol", "carol's password").await;
    let mut browser = Browser::new(&server);
    for _ in 0..10 {
        assert_eq!(browser.sign_in("carol", "guess").await.status(), 401);
    }
    let limited = browser.sign_in("carol", "carol's password").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert!(limited.headers().get(header::SET_COOKIE).is_none());
    assert!(limited.text().await.unwrap().contains("Too many attempts."));
}

#[tokio::test]
async fn idle_sessions_end_and_a_new_password_ends_them_all() {
    let server = TestServer::start_with(&[("HOP_SESSION_IDLE_MINUTES", "5")]).await;
    user_with_password(&server, "dave", "dave's password").await;
    let mut first = Browser::new(&server);
    let mut second = Browser::new(&server);
    assert_eq!(first.sign_in("dave", "dave's password").await.status(), 303);
    assert_eq!(
        second.sign_in("dave", "dave's password").await.status(),
        303
    );
    assert_eq!(first.get("/app/links").await.status(), 200);

    // Unused for six minutes: the first session is over. (Set through the server's
    // own store: no second connection to a store it is using.)
    let six_minutes_ago = hop_now_ms() - 6 * 60_000;
    let first_token = first.cookie.as_ref().unwrap().split('=').nth(1).unwrap();
    server
        .state
        .stores
        .sessions
        .touch_session(&token_hash(first_token), six_minutes_ago)
        .await
        .unwrap();
    let idle = first.get("/app/links").await;
    assert_eq!(idle.status(), 303);
    assert_eq!(location(&idle), "/app/login");
    assert_eq!(second.get("/app/links").await.status(), 200);

    // A new password ends every session of the user.
    let set = users(&server, &["passwd", "dave"], "a new password\n").await;
    assert!(set.status.success());
    assert_eq!(second.get("/app/links").await.status(), 303);
    assert_eq!(
        second.sign_in("dave", "dave's password").await.status(),
        401
    );
    assert_eq!(second.sign_in("dave", "a new password").await.status(), 303);

    // So does removing the user.
    let removed = users(&server, &["remove", "dave"], "").await;
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(second.get("/app/links").await.status(), 303);
}

fn hop_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn passwd_refuses_bad_input_and_unknown_users() {
    let server = TestServer::start().await;
    let short = users(&server, &["passwd", "admin"], "short\n").await;
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("8 to 128 characters"), "{stderr}");
    let unknown = users(&server, &["passwd", "nobody"], "long enough\n").await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user named `nobody`"));
    // `admin` has no password: signing in is refused, as for a wrong one.
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in("admin", "").await.status(), 401);
    // A key holder is no dashboard user: the API key is not a password.
    let key = create_key(&server.state, "erin", false).await;
    assert_eq!(browser.sign_in("erin", &key).await.status(), 401);
}

/// Sets a password through a password link, from a browser on `base`.
async fn use_password_link(
    http: &reqwest::Client,
    link: &str,
    base: &str,
    password: &str,
    again: &str,
) -> reqwest::Response {
    http.post(link)
        .header(header::ORIGIN, base)
        .form(&[("password", password), ("again", again)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_first_start_prints_a_password_link_for_the_admin() {
    let dir = common::data_dir();
    let server = common::HopProcess::start(dir.path(), &[]);
    let lines = server.stderr_lines(4);
    assert!(lines[0].contains("will not be shown again"), "{lines:?}");
    assert!(
        lines[1].starts_with("hop_"),
        "the key is where it always was"
    );
    assert!(
        lines[2].contains("set a password within 24 hours"),
        "{lines:?}"
    );
    let link = lines[3].clone();
    assert!(link.starts_with(&server.url("/app/setup/")), "{link}");
    let base = server.url("");
    let http = common::client();

    let form = http.get(&link).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("admin"));
    // Mistakes show the form again and use nothing up.
    let differ = use_password_link(&http, &link, &base, "first try!", "second try").await;
    assert_eq!(differ.status(), 400);
    assert!(
        differ
            .text()
            .await
            .unwrap()
            .contains("The two passwords differ.")
    );
    let short = use_password_link(&http, &link, &base, "short", "short").await;
    assert_eq!(short.status(), 400);
    let elsewhere = use_password_link(
        &http,
        &link,
        "https://evil.example",
        "evil's pick",
        "evil's pick",
    )
    .await;
    assert_eq!(elsewhere.status(), 403);

    let set = use_password_link(&http, &link, &base, "admin's own", "admin's own").await;
    assert_eq!(set.status(), 303, "set and signed in");
    assert_eq!(location(&set), "/app/links");
    let cookie = set.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let links = http
        .get(server.url("/app/links"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(links.status(), 200);

    // Once only.
    assert_eq!(http.get(&link).send().await.unwrap().status(), 404);
    let again = use_password_link(&http, &link, &base, "another one", "another one").await;
    assert_eq!(again.status(), 404);
    // The password works for signing in.
    let signed_in = http
        .post(server.url("/app/login"))
        .header(header::ORIGIN, &base)
        .form(&[("name", "admin"), ("password", "admin's own")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    server.signal("TERM");
    assert!(server.wait().0);
}

#[tokio::test]
async fn passwd_link_lets_a_user_set_their_own_password() {
    let server = TestServer::start().await;
    assert!(users(&server, &["add", "frank"], "").await.status.success());
    let output = users(&server, &["passwd", "frank", "--link"], "").await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let link = stdout.lines().last().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{}/app/setup/", server.base)),
        "{stdout}"
    );
    let http = &server.client;
    let set = use_password_link(http, &link, &server.base, "frank's pick", "frank's pick").await;
    assert_eq!(set.status(), 303);
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in("frank", "frank's pick").await.status(), 303);
    // A mistyped or made-up link is refused.
    let made_up = format!("{}/app/setup/{}", server.base, "ab".repeat(32));
    assert_eq!(http.get(&made_up).send().await.unwrap().status(), 404);
    assert_eq!(
        http.get(format!("{}/app/setup/xyz", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let unknown = users(&server, &["passwd", "nobody", "--link"], "").await;
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn the_link_page_edits_disables_and_deletes() {
    let server = TestServer::start().await;
    user_with_password(&server, "gina", "gina's password").await;
    let mut browser = Browser::new(&server);
    assert_eq!(
        browser.sign_in("gina", "gina's password").await.status(),
        303
    );
    let csrf = browser.csrf("/app/links/new").await;
    let created = browser
        .post(
            "/app/links/new",
            &[
                ("csrf", &csrf),
                ("url", "https://example.com/old"),
                ("alias", "edit-me"),
            ],
        )
        .await;
    assert_eq!(created.status(), 201);
    let page = browser.get("/app/links/edit-me").await;
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("value=\"https://example.com/old\""), "{text}");
    assert!(text.contains("/app/links/edit-me/qr.png?download"));

    // A new target, title, tags and limit: saved, and the redirect follows at once.
    let saved = browser
        .post(
            "/app/links/edit-me",
            &[
                ("csrf", &csrf),
                ("url", "https://example.com/new"),
                ("title", "Renamed <b>bold</b>"),
                ("tags", "one, two"),
                ("expires_at", ""),
                ("max_clicks", "5"),
                ("redirect_type", "307"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(location(&saved), "/app/links/edit-me?saved");
    let redirect = server.get("/edit-me").await;
    assert_eq!(redirect.status(), 307);
    assert_eq!(location(&redirect), "https://example.com/new");
    let text = browser
        .get("/app/links/edit-me?saved")
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("Saved."));
    assert!(text.contains("Renamed &lt;b&gt;bold&lt;/b&gt;"), "{text}");
    let key = hop_key(&server, "gina").await;
    let link = server.get_json_as(&key, "/api/v1/links/edit-me").await;
    assert_eq!(link["maxClicks"], 5);
    assert_eq!(link["tags"], json!(["one", "two"]));

    // Bad values: the form again with the reason, nothing changed.
    for (field, value, reason) in [
        ("url", "javascript:alert(1)", "scheme"),
        ("max_clicks", "many", "whole number"),
        ("expires_at", "tomorrow", "expiresAt"),
    ] {
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("url", "https://example.com/new"),
            ("title", "Renamed <b>bold</b>"),
            ("tags", "one, two"),
            ("max_clicks", "5"),
            ("redirect_type", "307"),
        ];
        form.retain(|(name, _)| *name != field);
        form.push((field, value));
        let refused = browser.post("/app/links/edit-me", &form).await;
        assert_eq!(refused.status(), 400, "{field}");
        let text = refused.text().await.unwrap();
        assert!(text.contains("role=\"alert\""), "{field}: {text}");
        assert!(text.contains(reason), "{field}: {text}");
    }
    assert_eq!(
        location(&server.get("/edit-me").await),
        "https://example.com/new"
    );
    // Without the token: refused.
    let forged = browser
        .post(
            "/app/links/edit-me",
            &[("csrf", "x"), ("url", "https://evil.example/")],
        )
        .await;
    assert_eq!(forged.status(), 403);

    // Disable: visitors get 410; enable again.
    let off = browser
        .post(
            "/app/links/edit-me/disabled",
            &[("csrf", &csrf), ("disabled", "true")],
        )
        .await;
    assert_eq!(off.status(), 303);
    assert_eq!(server.get("/edit-me").await.status(), 410);
    assert!(
        browser
            .get("/app/links/edit-me")
            .await
            .text()
            .await
            .unwrap()
            .contains("Enable")
    );
    let on = browser
        .post(
            "/app/links/edit-me/disabled",
            &[("csrf", &csrf), ("disabled", "false")],
        )
        .await;
    assert_eq!(on.status(), 303);
    assert_eq!(server.get("/edit-me").await.status(), 307);

    // The QR code downloads as a PNG of the asked size.
    let png = browser
        .get("/app/links/edit-me/qr.png?download&size=512")
        .await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()[header::CONTENT_TYPE], "image/png");
    assert!(
        png.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("edit-me-qr.png")
    );
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG"));
    assert_eq!(
        browser
            .get("/app/links/edit-me/qr.png?size=9")
            .await
            .status(),
        400
    );

    // Someone else's link, or none: a 404 page, and no change.
    server
        .create_ok(json!({"url": "https://example.com/admins", "alias": "not-gina"}))
        .await;
    assert_eq!(browser.get("/app/links/not-gina").await.status(), 404);
    let theirs = browser
        .post("/app/links/not-gina/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(server.get("/not-gina").await.status(), 302);

    // Delete asks first; then the code stops redirecting.
    let confirm = browser.get("/app/links/edit-me/delete").await;
    assert_eq!(confirm.status(), 200);
    assert!(confirm.text().await.unwrap().contains("Delete edit-me?"));
    let deleted = browser
        .post("/app/links/edit-me/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(location(&deleted), "/app/links");
    assert_eq!(server.get("/edit-me").await.status(), 404);
    assert_eq!(browser.get("/app/links/edit-me").await.status(), 404);
}

#[tokio::test]
async fn api_keys_are_created_once_listed_and_revoked() {
    let server = TestServer::start().await;
    user_with_password(&server, "hana", "hana's password").await;
    let other_key = hop_key(&server, "admin").await;
    let mut browser = Browser::new(&server);
    assert_eq!(
        browser.sign_in("hana", "hana's password").await.status(),
        303
    );
    let page = browser.get("/app/keys").await.text().await.unwrap();
    assert!(page.contains("No keys yet."), "{page}");
    let csrf = browser.csrf("/app/keys").await;

    let created = browser
        .post("/app/keys", &[("csrf", &csrf), ("name", "laptop <i>")])
        .await;
    assert_eq!(created.status(), 201);
    let page = created.text().await.unwrap();
    let start = page.find("value=\"hop_").expect("the secret is shown") + 7;
    let secret = &page[start..start + page[start..].find('"').unwrap()];
    assert!(page.contains("laptop &lt;i&gt;"));
    // The key works as hana's.
    let made = server
        .create_as(
            secret,
            json!({"url": "https://example.com/with-the-key", "alias": "by-key"}),
        )
        .await;
    assert_eq!(made.status(), 201);
    assert!(
        browser
            .get("/app/links")
            .await
            .text()
            .await
            .unwrap()
            .contains("by-key")
    );
    // Listed by its prefix, never again in full.
    let page = browser.get("/app/keys").await.text().await.unwrap();
    let at = page.find("<code>hop_").expect("the key's prefix is listed") + 6;
    let prefix = page[at..].split('…').next().unwrap().to_owned();
    assert!(
        secret.starts_with(&prefix) && !page.contains(secret),
        "{page}"
    );

    // Someone else's key cannot be revoked from here; a bad name is refused.
    let admin_prefix = &other_key[..prefix.len()];
    let theirs = browser
        .post(
            &format!("/app/keys/{admin_prefix}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(theirs.status(), 404);
    let listing = server.get_json_as(&other_key, "/api/v1/links").await;
    assert!(
        listing["items"].is_array(),
        "the admin's key still works: {listing}"
    );
    let unnamed = browser
        .post("/app/keys", &[("csrf", &csrf), ("name", " ")])
        .await;
    assert_eq!(unnamed.status(), 400);
    let forged = browser
        .post(&format!("/app/keys/{prefix}/revoke"), &[("csrf", "nope")])
        .await;
    assert_eq!(forged.status(), 403);

    // Revoked: the key stops working at once.
    let revoked = browser
        .post(&format!("/app/keys/{prefix}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(revoked.status(), 303);
    let refused = server
        .create_as(secret, json!({"url": "https://example.com/after"}))
        .await;
    assert_eq!(refused.status(), 401);
    assert!(
        browser
            .get("/app/keys")
            .await
            .text()
            .await
            .unwrap()
            .contains("revoked")
    );
}
