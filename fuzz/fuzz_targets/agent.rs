//! The user-agent classifier (`analytics::agent::classify`), run on every click.
//!
//! Checks: no panic; every field is one of its documented values; a visitor is a bot
//! exactly when its device is "bot"; an empty or blank header is a bot; ASCII case and
//! surrounding whitespace change nothing (tokens are matched case-insensitively on the
//! trimmed header).

#![no_main]

use hop::analytics::agent::{Agent, classify};
use libfuzzer_sys::fuzz_target;

const BROWSERS: &[&str] = &[
    "Chrome",
    "Firefox",
    "Safari",
    "Edge",
    "Opera",
    "Samsung Internet",
    "Yandex",
    "Vivaldi",
    "Internet Explorer",
    "Other",
];
const SYSTEMS: &[&str] = &[
    "Windows", "macOS", "iOS", "Android", "Linux", "ChromeOS", "Other",
];
const DEVICES: &[&str] = &["desktop", "mobile", "tablet", "bot", "unknown"];

fuzz_target!(|data: &[u8]| {
    let Ok(ua) = std::str::from_utf8(data) else {
        return;
    };
    let agent = classify(ua);
    check(ua, agent);
    assert_eq!(
        classify(&ua.to_ascii_uppercase()),
        agent,
        "{ua:?} in upper case"
    );
    assert_eq!(
        classify(&ua.to_ascii_lowercase()),
        agent,
        "{ua:?} in lower case"
    );
    assert_eq!(classify(&format!(" \t{ua}  ")), agent, "{ua:?} padded");
});

fn check(ua: &str, agent: Agent) {
    assert!(BROWSERS.contains(&agent.browser), "{ua:?}: {agent:?}");
    assert!(SYSTEMS.contains(&agent.os), "{ua:?}: {agent:?}");
    assert!(DEVICES.contains(&agent.device), "{ua:?}: {agent:?}");
    assert_eq!(agent.bot, agent.device == "bot", "{ua:?}: {agent:?}");
    if ua.trim().is_empty() {
        assert!(agent.bot, "a blank user agent is a bot");
    }
}
