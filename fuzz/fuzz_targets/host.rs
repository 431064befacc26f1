//! Host matching: `DomainName::parse` (what an admin registers), the `Host` header
//! helpers in `domain::host`, and `Hosts::site_for_host` / `site_for_name` (which site a
//! request is for).
//!
//! Input: lines. The first is the default host (the host of `base_url`), the last the
//! request's `Host` header, every line is also offered as a domain to register (the
//! valid ones are). Checks: a registered name is normalised (lower-case ASCII, parses
//! again to itself, in any ASCII case), never taken for the machine itself, matches
//! itself in any case; a `Host` reaches the default site exactly when it matches the
//! default host or names the machine, a named site only when it matches that name, and
//! no site only when no registered name matches it.

#![no_main]

use hop::domain::host::{DomainName, host_matches, is_machine_host, without_port};
use hop::hosts::{Hosts, Site};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let default_host = lines[0].to_ascii_lowercase();
    let header = lines[lines.len() - 1];

    let mut names = Vec::new();
    for line in &lines {
        let _ = without_port(line);
        let _ = is_machine_host(line);
        if let Ok(name) = DomainName::parse(line) {
            check_name(line, &name);
            names.push(name.into_string());
        }
    }

    let hosts = Hosts::new(default_host.clone());
    hosts.set_named(names.iter().cloned());
    assert_eq!(hosts.site_for_host(None), Some(Site::Default));

    let default = host_matches(header, &default_host) || is_machine_host(header);
    let matching: Vec<&String> = names.iter().filter(|n| host_matches(header, n)).collect();
    match hosts.site_for_host(Some(header)) {
        Some(Site::Default) => assert!(default, "{header:?} reached the default site"),
        Some(Site::Named(name)) => {
            assert!(!default, "{header:?} is the default host, not {name}");
            assert!(
                matching.iter().any(|n| ***n == *name),
                "{header:?} reached {name:?}, which it does not match"
            );
        }
        None => {
            assert!(
                !default,
                "{header:?} is the default host but reached nothing"
            );
            assert!(
                matching.is_empty(),
                "{header:?} matches {matching:?} but reached nothing"
            );
        }
    }

    for name in &names {
        // A registered name always reaches its own site by its exact text, unless it is
        // (a spelling of) the default host.
        let site = hosts.site_for_host(Some(name.as_str()));
        if host_matches(name, &default_host) {
            assert_eq!(site, Some(Site::Default));
        } else {
            assert_eq!(site, Some(Site::Named(name.as_str().into())), "{name:?}");
        }
        let by_name = hosts.site_for_name(name);
        if name.eq_ignore_ascii_case(&default_host) {
            assert_eq!(by_name, Some(Site::Default));
        } else {
            assert_eq!(by_name, Some(Site::Named(name.as_str().into())), "{name:?}");
        }
    }
});

fn check_name(line: &str, name: &DomainName) {
    let text = name.as_str();
    assert!(
        text.bytes().all(|b| b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'.'
            || b == b'-'
            || b == b':'),
        "{line:?} registered as {text:?}"
    );
    assert_eq!(
        DomainName::parse(text).as_ref(),
        Ok(name),
        "{line:?} registered as {text:?}, which does not parse to itself"
    );
    assert_eq!(
        DomainName::parse(&line.to_ascii_uppercase()).as_ref(),
        Ok(name),
        "{line:?} in upper case is another name"
    );
    assert!(
        !is_machine_host(text),
        "{text:?} would reach the default site"
    );
    assert!(host_matches(text, text));
    assert!(host_matches(&text.to_ascii_uppercase(), text));
    let bare = without_port(text);
    assert!(!bare.contains(':'), "{text:?} keeps a port in {bare:?}");
    if bare != text {
        // A name with a port matches only that port; the bare host is another name.
        assert!(!host_matches(bare, text));
    } else {
        // A name without a port matches it on any port.
        assert!(host_matches(&format!("{text}:8080"), text));
    }
}
