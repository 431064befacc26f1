//! Click analytics: what a redirect tells us about a visit.
//!
//! Enrichment is pure library code: [`enrich::Enricher`] turns a [`enrich::RawProfile`] (the
//! headers and address the redirect saw) into a [`enrich::Profile`] using [`agent`] (browser,
//! OS, device, bot), [`language`], [`referrer`], [`geo`] (a MaxMind City database) and
//! [`anonymize`] (what is kept of the address: nothing, or a truncated prefix).
//!
//! [`pipeline`] carries visits from the redirect to the database: a bounded queue the
//! redirect appends to, drained on a timer, enriched, published to live feeds and stored.
//! [`block`] is how raw visits are stored: a block per link per drain; [`rollup`] sums a
//! batch into the rows every backend writes.

pub mod agent;
pub mod anonymize;
pub mod block;
pub mod enrich;
pub mod geo;
pub mod language;
pub mod pipeline;
pub mod referrer;
pub mod rollup;
