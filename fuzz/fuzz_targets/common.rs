//! What several targets share: the URL policies hop is run with.

use hop::domain::url::UrlPolicy;

/// The policy of a default install whose `base_url` is `https://sho.rt` and which
/// listens on port 8080 (as `app::build` derives it: the base host on 80 and 443, and
/// any local address on the listen port).
pub fn default_policy() -> UrlPolicy {
    UrlPolicy {
        allowed_schemes: vec!["http".into(), "https".into()],
        max_len: 4096,
        own_origins: vec![("sho.rt".into(), 80), ("sho.rt".into(), 443)],
        own_local_ports: vec![8080],
    }
}

/// A permissive deployment: more schemes (non-special ones too, whose URLs the parser
/// treats differently), a short length limit, a base URL with an explicit port.
pub fn wide_policy() -> UrlPolicy {
    UrlPolicy {
        allowed_schemes: ["http", "https", "ftp", "ws", "mailto", "git", "tel"]
            .map(String::from)
            .to_vec(),
        max_len: 200,
        own_origins: vec![("go.example.com".into(), 8443)],
        own_local_ports: vec![80, 443],
    }
}
