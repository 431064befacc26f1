//! Reading click analytics: stats (a time series and ranked breakdowns), raw visits
//! (JSON pages or a CSV export) and a live feed of visits (Server-Sent Events).
//!
//! Stats are computed from the rollups, never from raw visits, so their cost depends on
//! the range (hours and days), not on how many clicks a link had. Series buckets are
//! local to `tz` (an IANA name, default UTC); hours older than the hourly window are
//! kept per UTC day, so over those the buckets follow UTC days. Breakdowns count
//! humans only and cover whole UTC days; past the hourly window they are kept per UTC
//! month, and a range that starts inside such a month counts from the next month.

use super::AppState;
use super::extract::{Caller, CodePath, StrictQuery, query_pairs};
use super::links::{owned_link, site_of};
use super::openapi::{BadRequest, NotFound};
use super::problem::{ApiError, Problem};
use crate::domain::link::{Link, format_ms, now_ms};
use crate::store::{PeriodCounts, StatsRows, StatsScope, StoredVisit};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, ToSpan, Unit, ZonedDateTime as Zoned, ZonedDateTimeRound};
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stats", get(all_stats))
        .route("/api/v1/links/{code}/stats", get(link_stats))
        .route("/api/v1/links/{code}/visits", get(link_visits))
        .route("/api/v1/links/{code}/live", get(link_live))
}

/// Default range: the last 30 days.
const DEFAULT_RANGE_S: i64 = 30 * 86_400;
/// Most buckets one series may have.
const MAX_BUCKETS: usize = 10_000;
/// Entries per breakdown, most visited first.
const MAX_BREAKDOWN: usize = 100;
/// Links in `topLinks`.
const TOP_LINKS: usize = 10;
/// Visits per page of the listing.
const MAX_VISITS_PAGE: usize = 1000;
const DEFAULT_VISITS_PAGE: usize = 100;

/// A series bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket, RFC 3339 with the offset of `tz`.
    #[schema(format = DateTime)]
    pub start: String,
    /// Human visits in the bucket.
    pub clicks: u64,
}

/// One value of a breakdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ranked {
    /// The value (`unknown` when it could not be told).
    pub value: String,
    pub clicks: u64,
}

/// Visits of one link, or of every link the caller can see.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    /// Every visit in range (humans and bots).
    pub total: u64,
    pub humans: u64,
    pub bots: u64,
    /// Human visits per bucket; sums to `humans`.
    pub series: Vec<Bucket>,
    pub countries: Vec<Ranked>,
    pub regions: Vec<Ranked>,
    pub cities: Vec<Ranked>,
    /// Referring hosts (`unknown`: no or an unusable `Referer`).
    pub referrers: Vec<Ranked>,
    pub browsers: Vec<Ranked>,
    pub os: Vec<Ranked>,
    pub devices: Vec<Ranked>,
    pub languages: Vec<Ranked>,
    /// How visitors came: `link` (the short URL) or `qr` (scanned the link's QR code).
    pub sources: Vec<Ranked>,
    /// The most visited links (humans and bots); only in `GET /api/v1/stats`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub top_links: Option<Vec<TopLink>>,
}

/// A link among the most visited.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopLink {
    pub code: String,
    pub domain: String,
    #[schema(format = "uri")]
    pub short_url: String,
    pub clicks: u64,
}

/// The series interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

/// What a stats request asks for.
struct StatsQuery {
    from: Timestamp,
    to: Timestamp,
    interval: Interval,
    tz: TimeZone,
    domain: Option<String>,
}

/// An RFC 3339 parameter, read as the links listing reads its times.
fn parse_timestamp(parameter: &str, value: &str) -> Result<Timestamp, ApiError> {
    let ms = super::links::parse_time(parameter, value)?;
    Timestamp::from_millisecond(ms).map_err(|_| {
        ApiError::invalid_parameter(parameter, format!("{parameter} `{value}` is out of range"))
    })
}

/// Parses strictly: unknown or repeated parameters are errors.
fn parse_stats_query(
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allow_domain: bool,
) -> Result<StatsQuery, ApiError> {
    let pairs = query_pairs(params)?;
    let mut names = StrictQuery::new(if allow_domain {
        &["from", "to", "interval", "tz", "domain"]
    } else {
        &["from", "to", "interval", "tz"]
    });
    let (mut from, mut to, mut interval, mut tz, mut domain) = (None, None, None, None, None);
    for (name, value) in pairs {
        names.check(&name)?;
        match name.as_str() {
            "from" => from = Some(parse_timestamp("from", &value)?),
            "to" => to = Some(parse_timestamp("to", &value)?),
            "interval" => {
                interval = Some(match value.as_str() {
                    "hour" => Interval::Hour,
                    "day" => Interval::Day,
                    "week" => Interval::Week,
                    "month" => Interval::Month,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "interval",
                            format!("interval must be hour, day, week or month (got `{value}`)"),
                        ));
                    }
                })
            }
            "tz" => {
                tz = Some(TimeZone::get(&value).map_err(|_| {
                    ApiError::invalid_parameter(
                        "tz",
                        format!("tz `{value}` is not an IANA time zone such as Europe/Paris"),
                    )
                })?)
            }
            "domain" => domain = Some(value),
            _ => unreachable!("StrictQuery admits only the names above"),
        }
    }
    let to = to
        .unwrap_or_else(|| Timestamp::from_millisecond(now_ms()).unwrap_or(Timestamp::UNIX_EPOCH));
    let from = from.unwrap_or_else(|| {
        Timestamp::from_second(to.as_second() - DEFAULT_RANGE_S).unwrap_or(Timestamp::UNIX_EPOCH)
    });
    if from >= to {
        return Err(ApiError::invalid_parameter(
            "from",
            "from must be before to".into(),
        ));
    }
    let interval = interval.unwrap_or(if to.as_second() - from.as_second() <= 2 * 86_400 {
        Interval::Hour
    } else {
        Interval::Day
    });
    Ok(StatsQuery {
        from,
        to,
        interval,
        tz: tz.unwrap_or(TimeZone::UTC),
        domain,
    })
}

/// The start of the bucket holding `at`, in the query's time zone.
fn bucket_start(at: &Zoned, interval: Interval) -> Result<Zoned, jiff::Error> {
    let day = at.start_of_day()?;
    match interval {
        Interval::Hour => at.round(
            ZonedDateTimeRound::new()
                .smallest(Unit::Hour)
                .mode(RoundMode::Trunc),
        ),
        Interval::Day => Ok(day),
        Interval::Week => {
            let back = i64::from(day.weekday().to_monday_zero_offset());
            day.checked_sub(back.days())
        }
        Interval::Month => day.first_of_month()?.start_of_day(),
    }
}

fn next_bucket(start: &Zoned, interval: Interval) -> Result<Zoned, jiff::Error> {
    match interval {
        Interval::Hour => start.checked_add(1.hour()),
        Interval::Day => start.checked_add(1.day()),
        Interval::Week => start.checked_add(1.week()),
        Interval::Month => start.checked_add(1.month()),
    }
}

/// Human visits per bucket from `from` to `to`, empty buckets included.
fn series(
    periods: impl Iterator<Item = PeriodCounts>,
    query: &StatsQuery,
) -> Result<Vec<Bucket>, ApiError> {
    let internal = |e: jiff::Error| ApiError::Internal(format!("bucketing the series: {e}"));
    let mut sums: HashMap<i64, u64> = HashMap::new();
    for period in periods {
        let at = Timestamp::from_second(period.start)
            .map_err(internal)?
            .to_zoned_datetime(query.tz.clone());
        let start = bucket_start(&at, query.interval).map_err(internal)?;
        *sums.entry(start.timestamp().as_second()).or_default() += period.humans;
    }
    let mut buckets = Vec::new();
    let mut start = bucket_start(
        &query.from.to_zoned_datetime(query.tz.clone()),
        query.interval,
    )
    .map_err(internal)?;
    while start.timestamp() < query.to {
        if buckets.len() == MAX_BUCKETS {
            return Err(ApiError::invalid_parameter(
                "interval",
                format!(
                    "more than {MAX_BUCKETS} buckets: use a coarser interval or a shorter range"
                ),
            ));
        }
        buckets.push(Bucket {
            // UTC with milliseconds, like every time hop answers with; the bucket is
            // still the query's local hour, day, week or month.
            start: format_ms(start.timestamp().as_millisecond()),
            clicks: sums
                .get(&start.timestamp().as_second())
                .copied()
                .unwrap_or(0),
        });
        start = next_bucket(&start, query.interval).map_err(internal)?;
    }
    Ok(buckets)
}

/// The ranked list of one dimension.
fn ranked(rows: &[(String, String, u64)], dimension: &str) -> Vec<Ranked> {
    let mut list: Vec<Ranked> = rows
        .iter()
        .filter(|(dim, _, _)| dim == dimension)
        .map(|(_, value, clicks)| Ranked {
            value: if value.is_empty() {
                "unknown".to_owned()
            } else {
                value.clone()
            },
            clicks: *clicks,
        })
        .collect();
    list.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.value.cmp(&b.value)));
    list.truncate(MAX_BREAKDOWN);
    list
}

fn build_stats(rows: StatsRows, query: &StatsQuery) -> Result<Stats, ApiError> {
    let periods = rows.hourly.iter().chain(rows.daily.iter()).copied();
    let (humans, bots) = periods
        .clone()
        .fold((0, 0), |(h, b), p| (h + p.humans, b + p.bots));
    Ok(Stats {
        from: format_ms(query.from.as_millisecond()),
        to: format_ms(query.to.as_millisecond()),
        total: humans + bots,
        humans,
        bots,
        series: series(periods, query)?,
        countries: ranked(&rows.dims, "country"),
        regions: ranked(&rows.dims, "region"),
        cities: ranked(&rows.dims, "city"),
        referrers: ranked(&rows.dims, "referrer"),
        browsers: ranked(&rows.dims, "browser"),
        os: ranked(&rows.dims, "os"),
        devices: ranked(&rows.dims, "device"),
        languages: ranked(&rows.dims, "language"),
        sources: ranked(&rows.dims, "source"),
        top_links: None,
    })
}

/// The caller's link for `code` in the domain the query names.
async fn link_for(
    state: &AppState,
    caller: &Caller,
    code: &str,
    domain: Option<&str>,
) -> Result<Link, ApiError> {
    let site = site_of(state, domain)?;
    owned_link(state, caller, &site, code).await
}

/// Visit stats of one link.
///
/// A series of human visits per `interval` in `tz`, totals (humans and bots apart) and
/// breakdowns of human visits by country, region, city, referrer, browser, OS, device,
/// language and source (link or QR code). Without `from` and `to`: the last 30 days.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}/stats",
    tag = "analytics",
    params(
        super::links::CodeParam,
        super::links::DomainParam,
        StatsParams,
    ),
    responses(
        (status = 200, description = "The link's stats", body = Stats),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn link_stats(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    let query = parse_stats_query(params, true)?;
    let link = link_for(&state, &caller, &code, query.domain.as_deref()).await?;
    let rows = state
        .stores
        .analytics
        .stats(
            StatsScope::Link(link.id),
            query.from.as_second(),
            query.to.as_second(),
            0,
        )
        .await?;
    Ok(Json(build_stats(rows, &query)?))
}

/// The `from`, `to`, `interval` and `tz` parameters of the stats routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StatsParams {
    /// Start of the range, RFC 3339 (default: 30 days before `to`).
    #[param(format = DateTime, nullable = false)]
    from: Option<String>,
    /// End of the range, exclusive, RFC 3339 (default: now).
    #[param(format = DateTime, nullable = false)]
    to: Option<String>,
    /// Series bucket (default: hour up to two days, else day).
    #[param(inline, nullable = false)]
    interval: Option<Interval>,
    /// IANA time zone the buckets follow (default UTC).
    #[param(nullable = false, example = "Europe/Paris")]
    tz: Option<String>,
}

/// Visit stats of every link the caller can see.
///
/// The same as a link's stats over the caller's links (every link for admins), plus
/// the ten most visited links.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "analytics",
    params(StatsParams),
    responses(
        (status = 200, description = "Stats over the caller's links", body = Stats),
        (status = 400, response = BadRequest),
    )
)]
pub async fn all_stats(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    let query = parse_stats_query(params, false)?;
    let rows = state
        .stores
        .analytics
        .stats(
            StatsScope::Owner(caller.visible_owner()),
            query.from.as_second(),
            query.to.as_second(),
            TOP_LINKS,
        )
        .await?;
    let top = rows.top_links.clone();
    let mut stats = build_stats(rows, &query)?;
    let mut links = Vec::with_capacity(top.len());
    for (id, clicks) in top {
        if let Some(link) = state.stores.links.link_by_id(id).await? {
            links.push(TopLink {
                short_url: state.settings.short_url(&link.domain, &link.code),
                domain: state.hosts.display(&link.domain).to_owned(),
                code: link.code,
                clicks,
            });
        }
    }
    stats.top_links = Some(links);
    Ok(Json(stats))
}

/// A page of visits.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VisitPage {
    pub items: Vec<StoredVisit>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The `limit`, `cursor` and `format` parameters of the visit listing.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct VisitParams {
    /// Visits per page (default 100; ignored for CSV, which exports every visit).
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
    /// `json` (default) or `csv`.
    #[param(nullable = false, pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// Raw visits of one link.
///
/// Newest first, within the raw retention window (`analytics_raw_retention_days`),
/// a page at a time; `format=csv` exports every visit in the window as CSV.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}/visits",
    tag = "analytics",
    params(super::links::CodeParam, super::links::DomainParam, VisitParams),
    responses(
        (status = 200, description = "A page of visits, or all of them as CSV", content(
            (VisitPage = "application/json"), (String = "text/csv"))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn link_visits(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(params)?;
    let (mut limit, mut cursor, mut csv, mut domain) = (DEFAULT_VISITS_PAGE, None, false, None);
    let mut names = StrictQuery::new(&["limit", "cursor", "format", "domain"]);
    for (name, value) in pairs {
        names.check(&name)?;
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_VISITS_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(
                            "limit",
                            format!("limit must be 1 to {MAX_VISITS_PAGE} (got `{value}`)"),
                        )
                    })?
            }
            "cursor" => {
                cursor = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::invalid_parameter(
                        "cursor",
                        format!("cursor `{value}` is not one this server gave out"),
                    )
                })?)
            }
            "format" => {
                csv = match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "format",
                            format!("format must be json or csv (got `{value}`)"),
                        ));
                    }
                }
            }
            "domain" => domain = Some(value),
            _ => unreachable!("StrictQuery admits only the names above"),
        }
    }
    let link = link_for(&state, &caller, &code, domain.as_deref()).await?;
    if csv {
        return Ok(csv_export(state, link));
    }
    let mut items = state
        .stores
        .analytics
        .visits(link.id, cursor, limit + 1)
        .await?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().and_then(|v| v.id).map(|id| id.to_string())
    } else {
        None
    };
    Ok(Json(VisitPage { items, next_cursor }).into_response())
}

const CSV_HEADER: &str =
    "at,bot,qr,browser,os,device,language,referrer_host,referrer_url,country,region,city,ip\r\n";
/// Visits read per step of a CSV export.
const CSV_CHUNK: usize = 5000;

/// A CSV field, quoted when it has to be (RFC 4180), and defused against spreadsheet
/// formulas (a leading `=`, `+`, `-` or `@` gets a `'`).
fn csv_field(out: &mut String, value: Option<&str>) {
    let value = value.unwrap_or("");
    let defused = value.starts_with(['=', '+', '-', '@']);
    if defused || value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        if defused {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_rows(visits: &[StoredVisit]) -> String {
    let mut out = String::with_capacity(visits.len() * 120);
    for v in visits {
        let bools = [v.bot, v.qr].map(|b| if b { "true" } else { "false" });
        let fields: [Option<&str>; 13] = [
            Some(&v.at),
            Some(bools[0]),
            Some(bools[1]),
            Some(&v.browser),
            Some(&v.os),
            Some(&v.device),
            v.language.as_deref(),
            v.referrer_host.as_deref(),
            v.referrer_url.as_deref(),
            v.country.as_deref(),
            v.region.as_deref(),
            v.city.as_deref(),
            v.ip.as_deref(),
        ];
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, field);
        }
        out.push_str("\r\n");
    }
    out
}

/// Streams every visit of the link as CSV, a chunk at a time (memory stays flat
/// however many visits there are).
fn csv_export(state: AppState, link: Link) -> Response {
    let filename = format!("attachment; filename=\"{}-visits.csv\"", link.code);
    let stream = futures_util::stream::unfold(
        (state, link.id, Some(None::<i64>), true),
        |(state, id, cursor, first)| async move {
            let cursor = cursor?;
            let page = state.stores.analytics.visits(id, cursor, CSV_CHUNK).await;
            let (text, next) = match page {
                Ok(visits) => {
                    let next = (visits.len() == CSV_CHUNK)
                        .then(|| visits.last().and_then(|v| v.id))
                        .flatten()
                        .map(Some);
                    (csv_rows(&visits), next)
                }
                Err(error) => {
                    // The status line is gone already: end the body early, and log.
                    tracing::error!(%error, "CSV export stopped");
                    return None;
                }
            };
            let chunk = if first {
                format!("{CSV_HEADER}{text}")
            } else {
                text
            };
            Some((Ok::<_, Infallible>(chunk), (state, id, next, false)))
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Live visits of one link (Server-Sent Events).
///
/// An event `visit` per redirect, within about a second, with the enriched and
/// anonymised fields of a listed visit (no `id`). Comments keep the stream open.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}/live",
    tag = "analytics",
    params(super::links::CodeParam, super::links::DomainParam),
    responses(
        (status = 200, description = "An event stream; each `visit` event's data is a visit",
            content_type = "text/event-stream", body = String),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, description = "Analytics are off on this server", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn link_live(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    super::extract::DomainQuery(domain): super::extract::DomainQuery,
) -> Result<Response, ApiError> {
    let link = link_for(&state, &caller, &code, domain.as_deref()).await?;
    let Some(analytics) = &state.analytics else {
        return Err(ApiError::AnalyticsOff);
    };
    if let Some(stream) = &state.stream {
        return live_from_stream(stream, link.id).await;
    }
    let receiver = analytics.subscribe();
    let id = link.id;
    let stream = futures_util::stream::unfold(receiver, move |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(live) if live.link == id => {
                    let event = Event::default()
                        .event("visit")
                        .json_data(&live.visit)
                        .unwrap_or_else(|_| Event::default().comment("unserialisable visit"));
                    return Some((Ok::<_, Infallible>(event), receiver));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    let event = Event::default().comment(format!("{skipped} visits skipped"));
                    return Some((Ok(event), receiver));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The live feed in a cluster with a click stream: the workers publish each link's
/// stored visits on its own subject, whichever node served them.
async fn live_from_stream(
    stream: &super::StreamHandle,
    link: crate::domain::link::LinkId,
) -> Result<Response, ApiError> {
    let subscriber = stream
        .client
        .subscribe(stream.settings.live_subject(link.0))
        .await
        .map_err(|error| ApiError::Unavailable(format!("the live feed is unavailable: {error}")))?;
    let events = futures_util::StreamExt::flat_map(subscriber, |message| {
        let visits: Vec<serde_json::Value> =
            serde_json::from_slice(&message.payload).unwrap_or_default();
        futures_util::stream::iter(visits.into_iter().map(|visit| {
            Ok::<_, Infallible>(
                Event::default()
                    .event("visit")
                    .json_data(&visit)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable visit")),
            )
        }))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
