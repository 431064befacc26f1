//! Where a visitor came from, from the `Referer` header.
//!
//! Two forms: the host, always recorded, and the full URL, recorded only where the
//! configuration asks for it (it can carry search terms or private paths). Only http(s)
//! referrers count; anything else (`android-app://`, `about:blank`, garbage) is `None`.

use url::Url;

/// The longest full referrer URL kept; longer ones are cut. Enough for any real page
/// address, small enough that a hostile header cannot bloat the click store.
pub const MAX_URL_LEN: usize = 2048;

/// Headers longer than this are not parsed at all: no browser sends one (they cap or strip
/// the referrer), and parsing is the costly part.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// The referring host, lower-cased, without port and without a leading `www.`.
///
/// `www.example.com` and `example.com` are the same site to anyone reading a referrer
/// report, so they are counted together; other subdomains (`news.example.com`) are kept
/// apart because they often are different sites. IPv6 hosts keep their brackets.
pub fn referrer_host(referer: &str) -> Option<String> {
    parse(referer).and_then(|url| host_of(&url))
}

/// The full referrer URL, safe to store: without user name, password and fragment, and at
/// most [`MAX_URL_LEN`] bytes. The caller decides whether to keep it at all.
pub fn referrer_url(referer: &str) -> Option<String> {
    parse(referer).map(sanitized)
}

/// Parses a `Referer` value into an http(s) URL with a host.
pub(crate) fn parse(referer: &str) -> Option<Url> {
    let referer = referer.trim();
    if referer.len() > MAX_HEADER_LEN {
        return None;
    }
    let url = Url::parse(referer).ok()?;
    let has_host = url.host_str().is_some_and(|host| !host.is_empty());
    (matches!(url.scheme(), "http" | "https") && has_host).then_some(url)
}

pub(crate) fn host_of(url: &Url) -> Option<String> {
    // The url crate lower-cases domain names and turns IDNs into punycode already.
    let host = url.host_str()?;
    let host = host
        .strip_prefix("www.")
        .filter(|rest| !rest.is_empty())
        .unwrap_or(host);
    Some(host.to_ascii_lowercase())
}

pub(crate) fn sanitized(mut url: Url) -> String {
    // Setting these cannot fail on an http(s) URL with a host, which `parse` guarantees;
    // the results are ignored rather than unwrapped all the same.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    let mut text = String::from(url);
    if text.len() > MAX_URL_LEN {
        // A serialized URL is ASCII (the url crate percent-encodes the rest), so any cut is
        // on a character boundary; floor_char_boundary keeps it safe regardless.
        text.truncate(text.floor_char_boundary(MAX_URL_LEN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let cases = [
            ("https://www.Example.com/path?q=1#frag", Some("example.com")),
            ("http://news.example.com:8080/a", Some("news.example.com")),
            ("https://EXAMPLE.COM", Some("example.com")),
            ("https://user:secret@example.org/", Some("example.org")),
            ("https://www.google.co.uk/", Some("google.co.uk")),
            ("https://www./", Some("www.")),
            ("https://wwwexample.com/", Some("wwwexample.com")),
            ("https://bücher.example/", Some("xn--bcher-kva.example")),
            ("http://192.168.1.1:3000/", Some("192.168.1.1")),
            ("http://[2001:DB8::1]:8080/", Some("[2001:db8::1]")),
            ("  https://example.com/  ", Some("example.com")),
            ("android-app://com.google.android.gm/", None),
            ("ftp://example.com/file", None),
            ("about:blank", None),
            ("file:///etc/passwd", None),
            ("javascript:alert(1)", None),
            ("example.com/no-scheme", None),
            ("", None),
            ("not a url at all", None),
            ("https://", None),
        ];
        for (referer, want) in cases {
            assert_eq!(referrer_host(referer).as_deref(), want, "{referer:?}");
        }
    }

    #[test]
    fn full_url_loses_credentials_and_fragment() {
        assert_eq!(
            referrer_url("https://user:secret@www.example.com:8443/a/b?q=rust#section").as_deref(),
            Some("https://www.example.com:8443/a/b?q=rust")
        );
        assert_eq!(
            referrer_url("https://user@example.com/").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(referrer_url("mailto:someone@example.com"), None);
    }

    #[test]
    fn full_url_is_capped() {
        let long = format!("https://example.com/?q={}", "a".repeat(5000));
        let url = referrer_url(&long).unwrap();
        assert_eq!(url.len(), MAX_URL_LEN);
        assert!(url.starts_with("https://example.com/?q=aaa"));
        // Non-ASCII is percent-encoded before the cut, so the result is still a valid string.
        let long = format!("https://example.com/{}", "é".repeat(3000));
        assert_eq!(referrer_url(&long).unwrap().len(), MAX_URL_LEN);
    }

    #[test]
    fn oversized_headers_are_not_parsed() {
        let huge = format!("https://example.com/{}", "a".repeat(MAX_HEADER_LEN));
        assert_eq!(referrer_host(&huge), None);
        assert_eq!(referrer_url(&huge), None);
    }
}
