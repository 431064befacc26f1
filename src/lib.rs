//! hop, a self-hosted URL shortener.
//!
//! Read in this order:
//! 1. [`domain`]: pure rules. Short codes ([`domain::code`]: the keyed permutation
//!    that turns a counter into unguessable unique codes), target URLs, links, API keys.
//! 2. [`store`]: persistence traits and the SQLite backend (group commit on one
//!    writer thread, pooled readers).
//! 3. [`codes`], [`cache`], [`clicks`], [`hosts`]: code allocation in leased blocks,
//!    the in-process redirect cache, click counting off the hot path, and which
//!    domain a request's `Host` names.
//! 4. [`analytics`]: click analytics off the redirect's path (queue, enrichment,
//!    rollups, retention).
//! 5. [`http`]: the router, handlers, extractors and problem+json errors.
//! 6. [`tier`]: the optional Redis tier of a cluster (invalidation across nodes,
//!    the shared cache, cluster-wide rate limits, behind a breaker).
//! 7. [`app`]: wiring it together, serving, graceful shutdown; [`config`] and [`cli`].
//!
//! `docs/ARCHITECTURE.md` draws the same map with the data flow.

#![forbid(unsafe_code)]

pub mod analytics;
pub mod app;
pub mod blocklist;
pub mod cache;
pub mod cli;
pub mod clicks;
pub mod codes;
pub mod config;
pub mod domain;
pub mod hosts;
pub mod http;
pub mod ratelimit;
pub mod store;
pub mod stream;
pub mod tier;
