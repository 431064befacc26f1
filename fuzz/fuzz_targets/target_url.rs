//! Target-URL validation (`TargetUrl::parse`): the only user input that reaches a
//! `Location` header. Checks, for every input and both policies: no panic; an accepted
//! URL is ASCII, within the length limit, a valid header value, of an allowed scheme,
//! with a host and no credentials, not one of hop's own origins; it validates again to
//! itself (stored text is a fixed point); an ASCII input is stored exactly as given.

#![no_main]

mod common;

use hop::domain::url::{TargetUrl, UrlPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for policy in [common::default_policy(), common::wide_policy()] {
        check(raw, &policy);
    }
});

fn check(raw: &str, policy: &UrlPolicy) {
    let Ok(url) = TargetUrl::parse(raw, policy) else {
        return;
    };
    let stored = url.as_str();
    assert!(stored.is_ascii(), "{raw:?} stored as non-ASCII {stored:?}");
    assert!(
        stored.len() <= policy.max_len,
        "{raw:?} stored over the limit"
    );
    if raw.is_ascii() {
        assert_eq!(stored, raw, "an ASCII URL is kept exactly");
    }
    assert!(
        http::HeaderValue::from_str(stored).is_ok(),
        "{raw:?} stored as {stored:?}, which is no valid Location value"
    );
    assert!(
        !stored.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{stored:?} carries whitespace"
    );
    let parsed = url::Url::parse(stored).expect("a stored URL parses");
    assert!(policy.allowed_schemes.iter().any(|s| s == parsed.scheme()));
    let host = parsed.host_str().expect("a stored URL has a host");
    assert!(!host.is_empty());
    assert!(parsed.username().is_empty() && parsed.password().is_none());
    if let Some(port) = parsed.port_or_known_default() {
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        assert!(
            !policy
                .own_origins
                .iter()
                .any(|(own, own_port)| own == host && *own_port == port),
            "{raw:?} points at hop itself"
        );
    }
    assert_eq!(
        TargetUrl::parse(stored, policy).as_ref(),
        Ok(&url),
        "{raw:?} stored as {stored:?}, which does not validate to itself"
    );
}
