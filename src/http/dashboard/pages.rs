//! The dashboard's pages as maud templates. maud escapes every interpolated value
//! (`(value)`) for HTML text and attributes, so titles, target URLs and tags that
//! users or visitors control are shown as text, never run; nothing here writes raw
//! HTML (`PreEscaped`) except the doctype.

use super::app_path;
use crate::domain::link::{Link, format_ms, now_ms};
use crate::http::AppState;
use crate::http::links::{LinkBody, LinkPage};
use crate::store::Session;
use maud::{DOCTYPE, Markup, html};

/// An asset's URL, with the binary's version so that a new hop is a new URL.
fn asset(state: &AppState, name: &str) -> String {
    app_path(
        state,
        &format!("/assets/{name}?v={}", env!("CARGO_PKG_VERSION")),
    )
}

/// Every page: the head, the top bar (with the user and sign-out when signed in) and
/// `body` as the main content.
fn layout(state: &AppState, title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · hop" }
                link rel="stylesheet" href=(asset(state, "app.css"));
                script src=(asset(state, "app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(app_path(state, "/links")) { "hop" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            a href=(app_path(state, "/links")) { "Links" }
                            a href=(app_path(state, "/links/new")) { "New link" }
                            a href=(app_path(state, "/keys")) { "API keys" }
                        }
                        form.signout method="post" action=(app_path(state, "/logout")) {
                            input type="hidden" name="csrf" value=(session.csrf_token);
                            span.user title=(if session.user.admin { "admin" } else { "user" }) {
                                (session.user.name)
                            }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// A table's column headings; an empty one is the actions column, named for
/// screen readers only.
fn table_head(columns: &[&str]) -> Markup {
    html! {
        thead {
            tr {
                @for column in columns {
                    @if column.is_empty() {
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } @else {
                        th scope="col" { (column) }
                    }
                }
            }
        }
    }
}

/// A message in a live region, so that screen readers announce it.
fn alert(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.alert role="alert" { (message) }
        }
    }
}

pub fn sign_in(state: &AppState, name: &str, error: Option<&str>) -> Markup {
    let body = html! {
        section.narrow {
            h1 { "Sign in" }
            (alert(error))
            form method="post" action=(app_path(state, "/login")) {
                label for="name" { "Name" }
                input id="name" name="name" type="text" autocomplete="username" required
                    autofocus value=(name);
                label for="password" { "Password" }
                input id="password" name="password" type="password"
                    autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.hint {
                "No password yet? An admin sets one with "
                code { "hop users passwd NAME" } "."
            }
        }
    };
    layout(state, "Sign in", None, body)
}

pub fn set_password(
    state: &AppState,
    user: &crate::store::User,
    token: &str,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        section.narrow {
            h1 { "Set your password" }
            p { "For " strong { (user.name) } ". This link works once." }
            (alert(error))
            form method="post" action=(app_path(state, &format!("/setup/{token}"))) {
                input type="text" name="name" value=(user.name) autocomplete="username" hidden;
                label for="password" { "New password" }
                input id="password" name="password" type="password" required autofocus
                    autocomplete="new-password" minlength="8" maxlength="128"
                    aria-describedby="password-hint";
                p.hint id="password-hint" { "8 to 128 characters." }
                label for="again" { "Once more" }
                input id="again" name="again" type="password" required
                    autocomplete="new-password";
                button type="submit" { "Set password and sign in" }
            }
        }
    };
    layout(state, "Set your password", None, body)
}

pub fn refused(reason: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Not done · hop" }
            }
            body {
                main {
                    h1 { "Not done" }
                    p role="alert" { (reason) }
                    p { "Nothing was changed." }
                }
            }
        }
    }
}

/// What the links page shows: the search as typed, and the page found (or why not).
pub struct LinksView<'a> {
    pub q: &'a str,
    pub tag: &'a str,
    pub sort: &'a str,
    pub listing: Option<&'a LinkPage>,
    pub error: Option<&'a str>,
}

/// The sorts the links page offers: (API value, label).
const SORTS: &[(&str, &str)] = &[
    ("-createdAt", "Newest first"),
    ("createdAt", "Oldest first"),
    ("-clicks", "Most clicked"),
    ("clicks", "Least clicked"),
];

/// A link's state in words: what a visitor gets now.
fn link_state(link: &LinkBody, now: &str) -> &'static str {
    // Both times are RFC 3339 in UTC with milliseconds: text order is time order.
    state_of(
        link.disabled,
        link.expires_at.as_deref().is_some_and(|at| at <= now),
        link.max_clicks.is_some_and(|max| link.clicks >= max),
        link.password_protected,
    )
}

fn state_of(disabled: bool, expired: bool, used_up: bool, password: bool) -> &'static str {
    if disabled {
        "disabled"
    } else if expired {
        "expired"
    } else if used_up {
        "used up"
    } else if password {
        "password"
    } else {
        "active"
    }
}

/// A state as a badge.
fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("state state-{}", state.replace(' ', "-"))) { (state) } }
}

pub fn links(state: &AppState, session: &Session, view: &LinksView<'_>) -> Markup {
    let now = format_ms(now_ms());
    let body = html! {
        div.heading {
            h1 { "Links" }
            a.button href=(app_path(state, "/links/new")) { "New link" }
        }
        form.search method="get" action=(app_path(state, "/links")) role="search" {
            div {
                label for="q" { "Search" }
                input id="q" name="q" type="search" value=(view.q)
                    placeholder="code, URL or title";
            }
            div {
                label for="tag" { "Tag" }
                input id="tag" name="tag" type="text" value=(view.tag);
            }
            div {
                label for="sort" { "Sort" }
                select id="sort" name="sort" {
                    @for (value, label) in SORTS {
                        option value=(value) selected[*value == view.sort] { (label) }
                    }
                }
            }
            button type="submit" { "Search" }
        }
        (alert(view.error))
        @if let Some(listing) = view.listing {
            @if listing.items.is_empty() {
                p.empty { "No links found." }
            } @else {
                table.links {
                    caption.visually-hidden { "Your links" }
                    (table_head(&["Short URL", "Target", "Title", "Tags", "Clicks", "State"]))
                    tbody {
                        @for link in &listing.items {
                            tr {
                                td data-label="Short URL" {
                                    a.short href=(app_path(state, &format!("/links/{}", link.code)))
                                        title="Details and changes" { (link.short_url) }
                                    " "
                                    button.copy type="button" hidden data-copy=(link.short_url)
                                        aria-label=(format!("Copy {}", link.short_url)) { "Copy" }
                                }
                                td.target data-label="Target" {
                                    a href=(link.url) rel="noreferrer" { (link.url) }
                                }
                                td data-label="Title" { (link.title.as_deref().unwrap_or("")) }
                                td data-label="Tags" {
                                    @for tag in &link.tags { span.tag { (tag) } " " }
                                }
                                td.number data-label="Clicks" { (link.clicks) }
                                td data-label="State" { (state_badge(link_state(link, &now))) }
                            }
                        }
                    }
                }
                @if let Some(cursor) = &listing.next_cursor {
                    nav.pages aria-label="Pages" {
                        a href=(next_page(state, view, cursor)) rel="next" { "Next page" }
                    }
                }
            }
        }
    };
    layout(state, "Links", Some(session), body)
}

/// The links page after `cursor`, with the same search.
fn next_page(state: &AppState, view: &LinksView<'_>, cursor: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", view.q)
        .append_pair("tag", view.tag)
        .append_pair("sort", view.sort)
        .append_pair("cursor", cursor)
        .finish();
    format!("{}?{query}", app_path(state, "/links"))
}

pub fn new_link(
    state: &AppState,
    session: &Session,
    form: &super::NewLinkForm,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        section.narrow {
            h1 { "New link" }
            (alert(error))
            form method="post" action=(app_path(state, "/links/new")) {
                input type="hidden" name="csrf" value=(session.csrf_token);
                label for="url" { "Target URL" }
                input id="url" name="url" type="url" required autofocus value=(form.url)
                    placeholder="https://example.com/a/long/page";
                label for="alias" { "Alias " span.optional { "(optional)" } }
                input id="alias" name="alias" type="text" value=(form.alias)
                    pattern="[A-Za-z0-9_\\-]{1,64}" aria-describedby="alias-hint";
                p.hint id="alias-hint" { "Letters, digits, - and _. Empty: a generated code." }
                label for="title" { "Title " span.optional { "(optional)" } }
                input id="title" name="title" type="text" value=(form.title) maxlength="512";
                label for="tags" { "Tags " span.optional { "(optional)" } }
                input id="tags" name="tags" type="text" value=(form.tags)
                    aria-describedby="tags-hint";
                p.hint id="tags-hint" { "Separated by commas." }
                button type="submit" { "Create" }
            }
        }
    };
    layout(state, "New link", Some(session), body)
}

/// The redirect statuses a link may answer with: (status, label).
const REDIRECTS: &[(u16, &str)] = &[
    (302, "302 Found (the default: browsers ask again each time)"),
    (301, "301 Moved Permanently (browsers may remember it)"),
    (307, "307 Temporary Redirect"),
    (308, "308 Permanent Redirect"),
];

/// A link's page: what it is, its QR code, and the forms that change it.
pub fn detail(
    state: &AppState,
    session: &Session,
    link: &Link,
    form: &super::EditForm,
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let short_url = state.settings.short_url(&link.domain, &link.code);
    let now = now_ms();
    let link_state = state_of(
        link.disabled,
        link.is_expired(now),
        link.max_clicks.is_some_and(|max| link.clicks >= max),
        link.password_hash.is_some(),
    );
    let qr = |ext: &str| app_path(state, &format!("/links/{}/qr.{ext}", link.code));
    let body = html! {
        div.heading {
            h1 { (link.code) }
            (state_badge(link_state))
        }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        (alert(error))
        div.detail {
            section {
                label for="short-url" { "Short URL" }
                div.copyline {
                    input id="short-url" type="text" readonly value=(short_url);
                    button.copy type="button" hidden data-copy=(short_url) { "Copy" }
                }
                dl.facts {
                    dt { "Clicks" } dd { (link.clicks) }
                    dt { "Created" } dd { time datetime=(format_ms(link.created_at)) { (format_ms(link.created_at)) } }
                    dt { "Changed" } dd { time datetime=(format_ms(link.updated_at)) { (format_ms(link.updated_at)) } }
                    @if let Some(reason) = &link.disabled_reason {
                        dt { "Disabled by an admin" } dd { (reason) }
                    }
                }
                figure.qr {
                    img src=(qr("svg")) width="256" height="256"
                        alt=(format!("QR code for {short_url}"));
                    figcaption {
                        "Download: "
                        a href=(format!("{}?download", qr("svg"))) download { "SVG" }
                        " · "
                        a href=(format!("{}?download&size=1024", qr("png"))) download { "PNG, 1024 px" }
                    }
                }
            }
            section {
                h2 { "Change" }
                form method="post" action=(app_path(state, &format!("/links/{}", link.code))) {
                    input type="hidden" name="csrf" value=(session.csrf_token);
                    label for="url" { "Target URL" }
                    input id="url" name="url" type="url" required value=(form.url);
                    label for="title" { "Title" }
                    input id="title" name="title" type="text" value=(form.title) maxlength="512";
                    label for="tags" { "Tags" }
                    input id="tags" name="tags" type="text" value=(form.tags)
                        aria-describedby="tags-hint";
                    p.hint id="tags-hint" { "Separated by commas." }
                    label for="expires_at" { "Expires at " span.optional { "(optional)" } }
                    input id="expires_at" name="expires_at" type="text" value=(form.expires_at)
                        placeholder="2030-01-01T00:00:00Z" aria-describedby="expires-hint";
                    p.hint id="expires-hint" { "RFC 3339, e.g. 2030-01-01T00:00:00Z. Empty: never." }
                    label for="max_clicks" { "Max clicks " span.optional { "(optional)" } }
                    input id="max_clicks" name="max_clicks" type="text" inputmode="numeric"
                        value=(form.max_clicks);
                    label for="redirect_type" { "Redirect" }
                    select id="redirect_type" name="redirect_type" {
                        @for (status, label) in REDIRECTS {
                            option value=(status) selected[status.to_string() == form.redirect_type] { (label) }
                        }
                    }
                    button type="submit" { "Save" }
                }
                form.inline method="post" action=(app_path(state, &format!("/links/{}/disabled", link.code))) {
                    input type="hidden" name="csrf" value=(session.csrf_token);
                    @if link.disabled {
                        input type="hidden" name="disabled" value="false";
                        button.secondary type="submit" { "Enable" }
                    } @else {
                        input type="hidden" name="disabled" value="true";
                        button.secondary type="submit" { "Disable" }
                    }
                }
                a.danger href=(app_path(state, &format!("/links/{}/delete", link.code))) { "Delete…" }
            }
        }
    };
    layout(state, &link.code, Some(session), body)
}

pub fn confirm_delete(state: &AppState, session: &Session, link: &Link) -> Markup {
    let short_url = state.settings.short_url(&link.domain, &link.code);
    let body = html! {
        section.narrow {
            h1 { "Delete " (link.code) "?" }
            p {
                (short_url) " stops redirecting at once, and its code is never given out "
                "again. Its clicks stay in the totals."
            }
            form method="post" action=(app_path(state, &format!("/links/{}/delete", link.code))) {
                input type="hidden" name="csrf" value=(session.csrf_token);
                button.danger type="submit" { "Delete" }
                " "
                a href=(app_path(state, &format!("/links/{}", link.code))) { "Keep it" }
            }
        }
    };
    layout(state, "Delete link", Some(session), body)
}

/// The user's API keys, newest first, and the form for a new one.
pub fn keys(
    state: &AppState,
    session: &Session,
    keys: &[crate::store::ApiKey],
    now: crate::domain::link::UnixMillis,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        h1 { "API keys" }
        p {
            "Programs use a key as " code { "Authorization: Bearer <key>" } ". "
            "A key acts as you: it sees and changes your links."
        }
        (alert(error))
        form.search method="post" action=(app_path(state, "/keys")) {
            input type="hidden" name="csrf" value=(session.csrf_token);
            div {
                label for="key-name" { "Name of a new key" }
                input id="key-name" name="name" type="text" required maxlength="64"
                    placeholder="laptop, CI, …";
            }
            button type="submit" { "Create key" }
        }
        @if keys.is_empty() {
            p.empty { "No keys yet." }
        } @else {
            table.links {
                caption.visually-hidden { "Your API keys" }
                (table_head(&["Key", "Name", "Created", "Expires", "State", ""]))
                tbody {
                    @for key in keys {
                        @let usable = key.is_usable(now);
                        tr {
                            td data-label="Key" { code { (key.prefix) "…" } }
                            td data-label="Name" { (key.name) }
                            td data-label="Created" { (format_ms(key.created_at)) }
                            td data-label="Expires" {
                                (key.expires_at.map(format_ms).unwrap_or_else(|| "never".into()))
                            }
                            td data-label="State" {
                                (state_badge(if key.revoked { "revoked" } else if usable { "active" } else { "expired" }))
                            }
                            td {
                                @if !key.revoked {
                                    form.inline method="post"
                                        action=(app_path(state, &format!("/keys/{}/revoke", key.prefix))) {
                                        input type="hidden" name="csrf" value=(session.csrf_token);
                                        button.secondary type="submit"
                                            aria-label=(format!("Revoke {}", key.prefix)) { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(state, "API keys", Some(session), body)
}

/// A new key's secret, shown this once.
pub fn key_created(
    state: &AppState,
    session: &Session,
    key: &crate::store::ApiKey,
    secret: &str,
) -> Markup {
    let body = html! {
        section.narrow {
            h1 { "Key created" }
            p.notice role="status" {
                "Copy it now: hop keeps only its hash, so it is not shown again."
            }
            label for="secret" { (key.name) }
            div.copyline {
                input id="secret" type="text" readonly value=(secret);
                button.copy type="button" hidden data-copy=(secret) { "Copy" }
            }
            p { a href=(app_path(state, "/keys")) { "All keys" } }
        }
    };
    layout(state, "Key created", Some(session), body)
}

pub fn created(state: &AppState, session: &Session, link: &Link) -> Markup {
    let short_url = state.settings.short_url(&link.domain, &link.code);
    let body = html! {
        section.narrow {
            h1 { "Link created" }
            label for="short-url" { "Short URL" }
            div.copyline {
                input id="short-url" type="text" readonly value=(short_url);
                button.copy type="button" hidden data-copy=(short_url) { "Copy" }
            }
            p { "Goes to " a href=(link.url) rel="noreferrer" { (link.url) } }
            @if let Some(title) = &link.title { p { "Title: " (title) } }
            figure.qr {
                img src=(app_path(state, &format!("/links/{}/qr.svg", link.code)))
                    width="256" height="256"
                    alt=(format!("QR code for {short_url}"));
                figcaption { "Scans count as visits from a QR code." }
            }
            p {
                a.button href=(app_path(state, "/links/new")) { "Create another" }
                " "
                a href=(app_path(state, "/links")) { "All links" }
            }
        }
    };
    layout(state, "Link created", Some(session), body)
}
