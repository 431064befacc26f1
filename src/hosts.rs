//! Which domain a request is for: the default domain (the host of `base_url`) or one
//! of the registered domains, held in memory so that a redirect never asks the
//! database whether its `Host` is served.
//!
//! The registered set is an `Arc<HashSet>` behind a `RwLock`: readers clone nothing but
//! the matched name's `Arc`, writers build a new set and swap it in. It is loaded at
//! start, reloaded after every change through the API, and every
//! [`REFRESH_INTERVAL`] so that changes made with `hop domains` on the same database
//! reach a running server.
//!
//! Rejected: reading the `domains` table on unknown hosts. A scan with random `Host`
//! values would then reach the database on every request.

use crate::domain::host::{DomainName, host_matches, is_machine_host, without_port};
use crate::store::{DomainStore, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the registered set is reread from the database.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The domain a link lives in or a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The host of `base_url`, stored as `""`.
    Default,
    /// A registered domain.
    Named(Arc<str>),
}

impl Site {
    /// The stored form: `""` for the default domain, else the name.
    pub fn as_str(&self) -> &str {
        match self {
            Site::Default => "",
            Site::Named(name) => name,
        }
    }
}

/// The default host and the registered domains.
pub struct Hosts {
    /// The host of `base_url`, lower-case, with `:port` only when the URL names one.
    default_host: String,
    named: RwLock<Arc<HashSet<Arc<str>>>>,
    /// Serialises reloads, so that a slow one cannot overwrite a newer one.
    reloading: tokio::sync::Mutex<()>,
}

impl Hosts {
    pub fn new(default_host: String) -> Self {
        Self {
            default_host: default_host.to_ascii_lowercase(),
            named: RwLock::new(Arc::new(HashSet::new())),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The host of `base_url` (the name the default domain is shown under).
    pub fn default_host(&self) -> &str {
        &self.default_host
    }

    /// The name a stored domain is shown under (`""` is the default host).
    pub fn display<'a>(&'a self, domain: &'a str) -> &'a str {
        if domain.is_empty() {
            &self.default_host
        } else {
            domain
        }
    }

    /// The site a request with this `Host` header is for; `None` for a host not served
    /// here. No header, an IP literal or `localhost` reach the default domain. The
    /// default host by name is found without allocating or locking.
    pub fn site_for_host(&self, host: Option<&str>) -> Option<Site> {
        let Some(host) = host else {
            return Some(Site::Default);
        };
        if host_matches(host, &self.default_host) || is_machine_host(host) {
            return Some(Site::Default);
        }
        let named = self.named.read().expect("domain set poisoned");
        // Without its port, a host can only be a name registered without one: `a:1:2`
        // must not reach `a:1` (found by fuzz/fuzz_targets/host.rs).
        let lookup = |host: &str| {
            named
                .get(host)
                .or_else(|| {
                    let bare = without_port(host);
                    (!bare.contains(':')).then(|| named.get(bare)).flatten()
                })
                .cloned()
        };
        let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lookup(&host.to_ascii_lowercase())
        } else {
            lookup(host)
        };
        found.map(Site::Named)
    }

    /// The site a name given to the API or CLI stands for: the default host, or a
    /// registered domain (in any letter case, or as Unicode). `None` if neither.
    pub fn site_for_name(&self, name: &str) -> Option<Site> {
        if name.eq_ignore_ascii_case(&self.default_host) {
            return Some(Site::Default);
        }
        let name = DomainName::parse(name).ok()?;
        if name.as_str() == self.default_host {
            return Some(Site::Default);
        }
        let named = self.named.read().expect("domain set poisoned");
        named.get(name.as_str()).cloned().map(Site::Named)
    }

    /// Rereads the registered domains from the store.
    pub async fn reload(&self, store: &dyn DomainStore) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let domains = store.list_domains().await?;
        let set: HashSet<Arc<str>> = domains
            .into_iter()
            .map(|domain| Arc::from(domain.name))
            .collect();
        *self.named.write().expect("domain set poisoned") = Arc::new(set);
        Ok(())
    }

    /// Replaces the registered set (for tests and callers that already hold it).
    pub fn set_named(&self, names: impl IntoIterator<Item = String>) {
        let set = names.into_iter().map(Arc::from).collect();
        *self.named.write().expect("domain set poisoned") = Arc::new(set);
    }
}

/// Rereads the registered domains every [`REFRESH_INTERVAL`]; a failed read keeps
/// the set as it was.
pub async fn run_refresh(hosts: Arc<Hosts>, store: Arc<dyn DomainStore>) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = hosts.reload(store.as_ref()).await {
            tracing::warn!(%error, "rereading domains failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Hosts {
        let hosts = Hosts::new("sho.rt".into());
        hosts.set_named(["go.example.com".into(), "links.example:8443".into()]);
        hosts
    }

    #[test]
    fn hosts_pick_their_site() {
        let hosts = hosts();
        let named = |name: &str| Some(Site::Named(Arc::from(name)));
        for (host, site) in [
            (None, Some(Site::Default)),
            (Some("sho.rt"), Some(Site::Default)),
            (Some("SHO.RT:443"), Some(Site::Default)),
            (Some("127.0.0.1:8080"), Some(Site::Default)),
            (Some("[::1]"), Some(Site::Default)),
            (Some("localhost"), Some(Site::Default)),
            (Some("go.example.com"), named("go.example.com")),
            (Some("Go.Example.Com:80"), named("go.example.com")),
            (Some("links.example:8443"), named("links.example:8443")),
            (Some("links.example"), None),
            (Some("links.example:80"), None),
            (Some("links.example:8443:80"), None),
            (Some("evil.example"), None),
        ] {
            assert_eq!(hosts.site_for_host(host), site, "{host:?}");
        }
    }

    #[test]
    fn names_pick_their_site() {
        let hosts = hosts();
        assert_eq!(hosts.site_for_name("sho.rt"), Some(Site::Default));
        assert_eq!(hosts.site_for_name("Sho.RT"), Some(Site::Default));
        assert_eq!(
            hosts.site_for_name("GO.example.com"),
            Some(Site::Named(Arc::from("go.example.com")))
        );
        assert_eq!(hosts.site_for_name("go.example.com:80"), None);
        assert_eq!(hosts.site_for_name("https://go.example.com"), None);
        assert_eq!(hosts.display(""), "sho.rt");
        assert_eq!(hosts.display("go.example.com"), "go.example.com");
    }
}
