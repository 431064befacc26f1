//! The target blocklist: hosts that links may not point at (phishing, malware, spam
//! lists), read from the files `blocklist_files` names and reread when they change.
//!
//! A line is a host name, or a hosts-file line (`0.0.0.0 bad.example other.example`);
//! `#` starts a comment. An entry blocks that host and every name under it, so
//! `bad.example` also blocks `www.bad.example`. Creating or retargeting a link to a
//! blocked host is refused; an existing link to one answers 410 with a neutral page.
//!
//! Entries are kept as 64-bit keyed hashes of the names, not the names: a million
//! entries take about 16 MB instead of about 70. Two different names share a hash
//! with a chance of about one in 10^13 per lookup at a million entries, which is
//! the price of that, and it is far below any list's own error rate.
//!
//! Checking a URL hashes its host and each parent domain (`a.b.example`, `b.example`,
//! `example`): a handful of lookups, done when a link is created or changed and when a
//! redirect fills the cache, never on a cached redirect.

use siphasher::sip::SipHasher13;
use std::collections::HashSet;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// Why a blocklist could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum BlocklistError {
    #[error("blocklist file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The hashed entries of one load of every file.
#[derive(Default)]
struct Entries {
    hashes: HashSet<u64>,
    /// Lines that were not host names, skipped (reported once per load).
    skipped: usize,
}

/// The blocklist in force, and the files it came from.
pub struct Blocklist {
    files: Vec<PathBuf>,
    entries: RwLock<Arc<Entries>>,
    /// Each file's modification time and length at the last load: a change reloads.
    seen: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

/// The hash an entry and a looked-up name share: SipHash-1-3 with a fixed key over the
/// lower-case name. The key need not be secret: entries come from the operator.
fn name_hash(name: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x686f_7062_6c6f_636b, 0x6c69_7374_6b65_7931);
    for &byte in name {
        hasher.write_u8(byte.to_ascii_lowercase());
    }
    hasher.finish()
}

/// An entry's normal form: lower-case ASCII (IDNA for other names), no trailing dot,
/// no `*.` or leading `.`; `None` for text that is not a host name.
fn normalise(token: &str) -> Option<String> {
    let token = token
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.');
    if token.is_empty() || token.len() > 253 {
        return None;
    }
    if token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Some(token.to_ascii_lowercase());
    }
    match url::Host::parse(token).ok()? {
        url::Host::Domain(name) => Some(name),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

/// The host names one line lists (a name, or a hosts-file line), or `Err` for a line
/// that is neither.
fn line_entries(line: &str) -> Result<Vec<String>, ()> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let names = match tokens.as_slice() {
        [one] => vec![*one],
        [address, names @ ..] if address.parse::<std::net::IpAddr>().is_ok() => names.to_vec(),
        _ => return Err(()),
    };
    names.into_iter().map(|n| normalise(n).ok_or(())).collect()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_files(files: &[PathBuf]) -> Result<Entries, BlocklistError> {
    let mut entries = Entries::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| BlocklistError::Read {
            path: path.clone(),
            source,
        })?;
        for (number, line) in text.lines().enumerate() {
            match line_entries(line) {
                Ok(names) => {
                    for name in names {
                        entries.hashes.insert(name_hash(name.as_bytes()));
                    }
                }
                Err(()) => {
                    if entries.skipped < 5 {
                        tracing::warn!(
                            file = %path.display(),
                            line = number + 1,
                            "blocklist line is not a host name; skipped"
                        );
                    }
                    entries.skipped += 1;
                }
            }
        }
    }
    Ok(entries)
}

/// The host of an absolute URL as stored (validated ASCII), without port or brackets.
fn url_host(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

impl Blocklist {
    /// Loads `files`; an unreadable file stops the start with an error naming it.
    pub fn load(files: Vec<PathBuf>) -> Result<Self, BlocklistError> {
        let seen = files.iter().map(|p| stamp(p)).collect();
        let entries = read_files(&files)?;
        if !files.is_empty() {
            tracing::info!(
                entries = entries.hashes.len(),
                skipped = entries.skipped,
                files = files.len(),
                "target blocklist loaded"
            );
        }
        Ok(Self {
            files,
            entries: RwLock::new(Arc::new(entries)),
            seen: Mutex::new(seen),
        })
    }

    /// No files: nothing is blocked, and checks cost nothing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Entries in force.
    pub fn len(&self) -> usize {
        self.current().hashes.len()
    }

    fn current(&self) -> Arc<Entries> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The listed name that blocks `host` (the host or a parent domain), if any.
    pub fn blocked_by<'h>(&self, host: &'h str) -> Option<&'h str> {
        if self.is_empty() {
            return None;
        }
        let entries = self.current();
        let host = host.trim_end_matches('.');
        let mut rest = host;
        loop {
            if entries.hashes.contains(&name_hash(rest.as_bytes())) {
                return Some(rest);
            }
            rest = &rest[rest.find('.')? + 1..];
        }
    }

    /// Whether a stored URL's host is blocked.
    pub fn blocks_url(&self, url: &str) -> bool {
        !self.is_empty() && url_host(url).is_some_and(|host| self.blocked_by(host).is_some())
    }

    /// Rereads the files if any changed since the last load; returns whether the list
    /// was replaced. An unreadable file keeps the list in force.
    pub fn reload_if_changed(&self) -> Result<bool, BlocklistError> {
        let now: Vec<_> = self.files.iter().map(|p| stamp(p)).collect();
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
        }
        let entries = read_files(&self.files)?;
        tracing::info!(
            entries = entries.hashes.len(),
            skipped = entries.skipped,
            "target blocklist reloaded"
        );
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(entries);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = now;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn list(text: &str) -> (tempfile::NamedTempFile, Blocklist) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let list = Blocklist::load(vec![file.path().to_owned()]).unwrap();
        (file, list)
    }

    #[test]
    fn names_hosts_files_and_comments() {
        let (_file, list) = list(
            "# a comment\n\
             bad.example\n\
             0.0.0.0 ads.tracker.example  other.example # trailing comment\n\
             *.wild.example\n\
             B\u{fc}cher.example\n\
             \n\
             two words here\n",
        );
        assert_eq!(list.len(), 5);
        for host in [
            "bad.example",
            "www.bad.example",
            "BAD.example.",
            "ads.tracker.example",
            "x.other.example",
            "wild.example",
            "a.wild.example",
            "xn--bcher-kva.example",
        ] {
            assert!(list.blocked_by(host).is_some(), "{host}");
        }
        for host in [
            "example",
            "tracker.example",
            "notbad.example",
            "bad.example.org",
        ] {
            assert!(list.blocked_by(host).is_none(), "{host}");
        }
        assert_eq!(list.blocked_by("a.b.bad.example"), Some("bad.example"));
    }

    #[test]
    fn urls_are_checked_by_their_host() {
        let (_file, list) = list("bad.example\n192.0.2.1\n");
        for url in [
            "https://bad.example/x",
            "http://WWW.BAD.EXAMPLE:8080/y?z#w",
            "https://bad.example",
            "http://192.0.2.1/",
        ] {
            assert!(list.blocks_url(url), "{url}");
        }
        for url in [
            "https://good.example/bad.example",
            "https://example.com/?bad.example",
        ] {
            assert!(!list.blocks_url(url), "{url}");
        }
        assert_eq!(url_host("http://[2001:db8::1]:80/x"), Some("2001:db8::1"));
    }

    #[test]
    fn a_changed_file_is_reread_and_an_unreadable_one_is_named() {
        let (mut file, list) = list("one.example\n");
        assert!(!list.reload_if_changed().unwrap());
        writeln!(file, "two.example").unwrap();
        file.flush().unwrap();
        assert!(list.reload_if_changed().unwrap());
        assert!(list.blocked_by("two.example").is_some());
        let missing = Blocklist::load(vec!["/nonexistent/list.txt".into()]);
        let message = missing.err().unwrap().to_string();
        assert!(message.contains("/nonexistent/list.txt"), "{message}");
    }

    #[test]
    fn no_files_block_nothing() {
        let list = Blocklist::load(Vec::new()).unwrap();
        assert!(list.is_empty());
        assert!(!list.blocks_url("https://anything.example/"));
    }
}
