//! Links: what is stored, the redirect kinds, and the validation of everything a
//! create request may carry besides the URL.

use super::code::{AliasError, validate_alias};
use super::url::{TargetUrl, UrlError, UrlPolicy};
use http::StatusCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Database id of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub i64);

/// Database id of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub i64);

/// Database id of a user (links belong to users; keys belong to users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);

/// Milliseconds since the Unix epoch: the one time representation in storage and in
/// the hot path (cheap to compare, no time zone).
pub type UnixMillis = i64;

/// Now, in Unix milliseconds.
pub fn now_ms() -> UnixMillis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 text for a Unix-milliseconds time, in UTC, always with milliseconds
/// (`2030-01-01T00:00:00.000Z`) so that every timestamp has the same shape.
///
/// Years 0 to 9999 are written directly (civil-from-days arithmetic): every link in
/// every API answer carries three of these, and `time`'s formatter cost more than the
/// URL parse of a create (docs/benchmarks.md). Other years go through `time`.
pub fn format_ms(ms: UnixMillis) -> String {
    // 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
    const FIRST: i64 = -62_167_219_200_000;
    const LAST: i64 = 253_402_300_799_999;
    if !(FIRST..=LAST).contains(&ms) {
        return format_ms_slow(ms);
    }
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut value = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, hour, 2);
    put(14, minute, 2);
    put(17, second, 2);
    put(20, milli, 3);
    for (at, byte) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = byte;
    }
    String::from_utf8(out.to_vec()).expect("ASCII digits and separators")
}

/// (year, month, day) of a count of days since 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// [`format_ms`] through `time`'s formatter: the reference, and years outside 0–9999.
fn format_ms_slow(ms: UnixMillis) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// The HTTP status a link redirects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectType {
    /// 301: permanent; browsers cache it, so later clicks may not reach hop.
    Permanent,
    /// 302: the default, every click comes back to hop and is counted.
    #[default]
    Found,
    /// 307: temporary, method and body preserved.
    Temporary,
    /// 308: permanent, method and body preserved.
    PermanentRedirect,
}

impl RedirectType {
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            301 => Self::Permanent,
            302 => Self::Found,
            307 => Self::Temporary,
            308 => Self::PermanentRedirect,
            _ => return None,
        })
    }

    pub fn code(self) -> u16 {
        match self {
            Self::Permanent => 301,
            Self::Found => 302,
            Self::Temporary => 307,
            Self::PermanentRedirect => 308,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Permanent => StatusCode::MOVED_PERMANENTLY,
            Self::Found => StatusCode::FOUND,
            Self::Temporary => StatusCode::TEMPORARY_REDIRECT,
            Self::PermanentRedirect => StatusCode::PERMANENT_REDIRECT,
        }
    }
}

/// A stored link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: LinkId,
    /// The domain the code lives in: `""` for the default domain (the base URL's
    /// host), else a registered domain name.
    pub domain: String,
    pub code: String,
    pub url: String,
    pub title: Option<String>,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub max_clicks: Option<u64>,
    pub redirect: RedirectType,
    /// Clicks flushed to the database so far.
    pub clicks: u64,
    pub owner: Option<UserId>,
    /// A disabled link answers 410 instead of redirecting.
    pub disabled: bool,
    /// Why an admin disabled the link (set only by admins; only they can enable it).
    pub disabled_reason: Option<String>,
    pub updated_at: UnixMillis,
    /// Sorted, lower-case.
    pub tags: Vec<String>,
    /// Argon2id PHC string when the link is password-protected.
    pub password_hash: Option<String>,
}

impl Link {
    /// Whether the link has expired at `now`.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a create request asks for, before validation (fields as the JSON carried them).
#[derive(Debug, Clone, Default)]
pub struct LinkRequest {
    pub url: String,
    pub alias: Option<String>,
    pub title: Option<String>,
    pub expires_at: Option<String>,
    pub max_clicks: Option<i64>,
    pub redirect_type: Option<u16>,
    pub tags: Option<Vec<String>>,
    pub password: Option<String>,
}

/// A create request that passed validation; `alias` is `None` for a generated code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDraft {
    pub url: TargetUrl,
    pub alias: Option<String>,
    pub title: Option<String>,
    pub expires_at: Option<UnixMillis>,
    pub max_clicks: Option<u64>,
    pub redirect: RedirectType,
    pub tags: Vec<String>,
    /// In clear: the HTTP layer hashes it (slowly, off the async workers).
    pub password: Option<String>,
}

/// Longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
/// Most tags on one link.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 50;

/// A field of a create request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Alias(#[from] AliasError),
    #[error("title must be at most {MAX_TITLE_CHARS} characters without control characters")]
    Title,
    #[error("expiresAt `{0}` is not an RFC 3339 time such as 2030-01-31T12:00:00Z")]
    ExpiryFormat(String),
    #[error("expiresAt `{0}` is not in the future")]
    ExpiryPast(String),
    #[error("maxClicks must be at least 1 (got {0})")]
    MaxClicks(i64),
    #[error("redirectType must be one of 301, 302, 307, 308 (got {0})")]
    RedirectType(u16),
    #[error(
        "tags must be at most {MAX_TAGS} tags of 1 to {MAX_TAG_CHARS} letters, digits, `-`, `_`, `.` or spaces ({0})"
    )]
    Tags(String),
    #[error(
        "password must be {} to {} characters without control characters",
        super::password::MIN_CHARS,
        super::password::MAX_CHARS
    )]
    Password,
    #[error("disabledReason must be 1 to {MAX_REASON_CHARS} characters without control characters")]
    Reason,
    #[error("disabledReason disables the link; it cannot come with `disabled: false`")]
    ReasonWhileEnabling,
}

impl DraftError {
    /// The JSON field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Url(_) => "url",
            Self::Alias(_) => "alias",
            Self::Title => "title",
            Self::ExpiryFormat(_) | Self::ExpiryPast(_) => "expiresAt",
            Self::MaxClicks(_) => "maxClicks",
            Self::RedirectType(_) => "redirectType",
            Self::Tags(_) => "tags",
            Self::Password => "password",
            Self::Reason | Self::ReasonWhileEnabling => "disabledReason",
        }
    }
}

/// A title as stored: `None` for an empty one; too long or control characters refused.
/// Longest reason an admin may give for disabling a link.
pub const MAX_REASON_CHARS: usize = 500;

fn valid_reason(reason: String) -> Result<String, DraftError> {
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(DraftError::Reason);
    }
    Ok(reason.to_owned())
}

fn valid_title(title: Option<String>) -> Result<Option<String>, DraftError> {
    match title {
        Some(title)
            if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) =>
        {
            Err(DraftError::Title)
        }
        Some(title) if title.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// An RFC 3339 expiry that must lie after `now`.
fn valid_expiry(text: String, now: UnixMillis) -> Result<UnixMillis, DraftError> {
    let at = OffsetDateTime::parse(&text, &Rfc3339)
        .map_err(|_| DraftError::ExpiryFormat(text.clone()))?;
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
    if ms <= now {
        return Err(DraftError::ExpiryPast(text));
    }
    Ok(ms)
}

fn valid_max_clicks(n: i64) -> Result<u64, DraftError> {
    if n < 1 {
        return Err(DraftError::MaxClicks(n));
    }
    Ok(n as u64)
}

/// Tags as stored: trimmed, lower-cased (so `News` and `news` are one tag), sorted and
/// without duplicates.
pub fn valid_tags(tags: Vec<String>) -> Result<Vec<String>, DraftError> {
    if tags.len() > MAX_TAGS {
        return Err(DraftError::Tags(format!("got {}", tags.len())));
    }
    let mut clean = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        let ok = (1..=MAX_TAG_CHARS).contains(&tag.chars().count())
            && tag
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
        if !ok {
            return Err(DraftError::Tags(format!("`{tag}` is not a valid tag")));
        }
        clean.push(tag);
    }
    clean.sort();
    clean.dedup();
    Ok(clean)
}

fn valid_password(password: String) -> Result<String, DraftError> {
    if super::password::is_valid(&password) {
        Ok(password)
    } else {
        Err(DraftError::Password)
    }
}

fn valid_redirect(code: u16) -> Result<RedirectType, DraftError> {
    RedirectType::from_code(code).ok_or(DraftError::RedirectType(code))
}

impl LinkRequest {
    /// Validates every field; the first problem found is returned.
    pub fn validate(self, policy: &UrlPolicy, now: UnixMillis) -> Result<LinkDraft, DraftError> {
        let url = TargetUrl::parse(&self.url, policy)?;
        if let Some(alias) = &self.alias {
            validate_alias(alias)?;
        }
        Ok(LinkDraft {
            url,
            alias: self.alias,
            title: valid_title(self.title)?,
            expires_at: self.expires_at.map(|t| valid_expiry(t, now)).transpose()?,
            max_clicks: self.max_clicks.map(valid_max_clicks).transpose()?,
            redirect: self
                .redirect_type
                .map(valid_redirect)
                .transpose()?
                .unwrap_or_default(),
            tags: valid_tags(self.tags.unwrap_or_default())?,
            password: self.password.map(valid_password).transpose()?,
        })
    }
}

/// What a change request asks for. Outer `None`: leave the field alone; `Some(None)`
/// (JSON `null`): clear it.
#[derive(Debug, Clone, Default)]
pub struct PatchRequest {
    pub url: Option<String>,
    pub title: Option<Option<String>>,
    pub expires_at: Option<Option<String>>,
    pub max_clicks: Option<Option<i64>>,
    pub redirect_type: Option<u16>,
    pub disabled: Option<bool>,
    /// Why an admin disables the link; `null` clears the reason (the link stays
    /// disabled). Only admins may send it; the HTTP layer checks.
    pub disabled_reason: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub password: Option<Option<String>>,
}

/// A validated change; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChanges {
    pub url: Option<TargetUrl>,
    pub title: Option<Option<String>>,
    pub expires_at: Option<Option<UnixMillis>>,
    pub max_clicks: Option<Option<u64>>,
    pub redirect: Option<RedirectType>,
    pub disabled: Option<bool>,
    /// `Some(Some(_))` sets an admin's reason (and disables); `Some(None)` clears it,
    /// as enabling a link always does.
    pub disabled_reason: Option<Option<String>>,
    /// Replaces the link's tags.
    pub tags: Option<Vec<String>>,
    /// A new password in clear (`Some(None)` removes protection); the HTTP layer
    /// hashes it into `password_hash` before the store sees the change.
    pub password: Option<Option<String>>,
    /// What the store writes: the PHC string, or `Some(None)` to clear.
    pub password_hash: Option<Option<String>>,
}

impl LinkChanges {
    /// Whether the change names no field at all (`PATCH {}`).
    pub fn is_empty(&self) -> bool {
        let Self {
            url,
            title,
            expires_at,
            max_clicks,
            redirect,
            disabled,
            disabled_reason,
            tags,
            password,
            password_hash,
        } = self;
        url.is_none()
            && title.is_none()
            && expires_at.is_none()
            && max_clicks.is_none()
            && redirect.is_none()
            && disabled.is_none()
            && disabled_reason.is_none()
            && tags.is_none()
            && password.is_none()
            && password_hash.is_none()
    }
}

impl PatchRequest {
    /// Validates every field present, by the same rules as a create.
    pub fn validate(self, policy: &UrlPolicy, now: UnixMillis) -> Result<LinkChanges, DraftError> {
        Ok(LinkChanges {
            url: self.url.map(|u| TargetUrl::parse(&u, policy)).transpose()?,
            title: self.title.map(valid_title).transpose()?,
            expires_at: self
                .expires_at
                .map(|e| e.map(|t| valid_expiry(t, now)).transpose())
                .transpose()?,
            max_clicks: self
                .max_clicks
                .map(|m| m.map(valid_max_clicks).transpose())
                .transpose()?,
            redirect: self.redirect_type.map(valid_redirect).transpose()?,
            disabled: match (&self.disabled_reason, self.disabled) {
                (Some(Some(_)), Some(false)) => return Err(DraftError::ReasonWhileEnabling),
                (Some(Some(_)), _) => Some(true),
                (_, disabled) => disabled,
            },
            disabled_reason: match (self.disabled_reason, self.disabled) {
                (Some(reason), _) => Some(reason.map(valid_reason).transpose()?),
                // Enabling a link ends an admin's reason too.
                (None, Some(false)) => Some(None),
                (None, _) => None,
            },
            tags: self.tags.map(valid_tags).transpose()?,
            password: self
                .password
                .map(|p| p.map(valid_password).transpose())
                .transpose()?,
            password_hash: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc_3339_with_milliseconds() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_893_456_000_000), "2030-01-01T00:00:00.000Z");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ms(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Past year 9999 the reference formatter answers.
        assert_eq!(
            format_ms(253_402_300_800_000),
            format_ms_slow(253_402_300_800_000)
        );
    }

    proptest::proptest! {
        #[test]
        fn the_direct_formatter_agrees_with_time(ms in -62_167_219_200_000i64..=253_402_300_799_999) {
            proptest::prop_assert_eq!(format_ms(ms), format_ms_slow(ms));
        }
    }

    fn policy() -> UrlPolicy {
        UrlPolicy {
            allowed_schemes: vec!["https".into(), "http".into()],
            max_len: 2048,
            own_origins: vec![],
            own_local_ports: vec![],
        }
    }

    fn request() -> LinkRequest {
        LinkRequest {
            url: "https://example.com".into(),
            ..LinkRequest::default()
        }
    }

    const NOW: UnixMillis = 1_800_000_000_000;

    #[test]
    fn defaults() {
        let draft = request().validate(&policy(), NOW).unwrap();
        assert_eq!(draft.redirect, RedirectType::Found);
        assert_eq!(draft.alias, None);
        assert_eq!(draft.expires_at, None);
    }

    #[test]
    fn field_errors() {
        let cases: Vec<(LinkRequest, &str)> = vec![
            (
                LinkRequest {
                    alias: Some("no/slash".into()),
                    ..request()
                },
                "alias",
            ),
            (
                LinkRequest {
                    alias: Some("docs".into()),
                    ..request()
                },
                "alias",
            ),
            (
                LinkRequest {
                    title: Some("a\u{0}b".into()),
                    ..request()
                },
                "title",
            ),
            (
                LinkRequest {
                    title: Some("x".repeat(513)),
                    ..request()
                },
                "title",
            ),
            (
                LinkRequest {
                    expires_at: Some("tomorrow".into()),
                    ..request()
                },
                "expiresAt",
            ),
            (
                LinkRequest {
                    expires_at: Some("2020-01-01T00:00:00Z".into()),
                    ..request()
                },
                "expiresAt",
            ),
            (
                LinkRequest {
                    max_clicks: Some(0),
                    ..request()
                },
                "maxClicks",
            ),
            (
                LinkRequest {
                    max_clicks: Some(-5),
                    ..request()
                },
                "maxClicks",
            ),
            (
                LinkRequest {
                    redirect_type: Some(303),
                    ..request()
                },
                "redirectType",
            ),
            (
                LinkRequest {
                    url: "mailto:a@b.c".into(),
                    ..request()
                },
                "url",
            ),
        ];
        for (req, field) in cases {
            let err = req.clone().validate(&policy(), NOW).unwrap_err();
            assert_eq!(err.field(), field, "{req:?} → {err}");
        }
    }

    #[test]
    fn accepts_full_request() {
        let draft = LinkRequest {
            alias: Some("launch".into()),
            title: Some("Launch".into()),
            expires_at: Some("2030-01-01T00:00:00+02:00".into()),
            max_clicks: Some(10),
            redirect_type: Some(308),
            ..request()
        }
        .validate(&policy(), NOW)
        .unwrap();
        assert_eq!(draft.expires_at, Some(1_893_448_800_000));
        assert_eq!(draft.redirect, RedirectType::PermanentRedirect);
        assert_eq!(draft.max_clicks, Some(10));
    }

    #[test]
    fn patches_distinguish_absent_from_cleared() {
        let changes = PatchRequest {
            title: Some(None),
            max_clicks: Some(Some(5)),
            ..PatchRequest::default()
        }
        .validate(&policy(), NOW)
        .unwrap();
        assert_eq!(changes.title, Some(None));
        assert_eq!(changes.max_clicks, Some(Some(5)));
        assert_eq!(changes.url, None);
        assert_eq!(changes.expires_at, None);
        let bad = PatchRequest {
            expires_at: Some(Some("2001-01-01T00:00:00Z".into())),
            ..PatchRequest::default()
        };
        assert_eq!(
            bad.validate(&policy(), NOW).unwrap_err().field(),
            "expiresAt"
        );
    }

    #[test]
    fn tags_are_normalised_and_bounded() {
        let tags = valid_tags(vec![
            " News ".into(),
            "news".into(),
            "q3-2030".into(),
            "a.b c_d".into(),
        ])
        .unwrap();
        assert_eq!(tags, ["a.b c_d", "news", "q3-2030"]);
        assert!(valid_tags(vec!["".into()]).is_err());
        assert!(valid_tags(vec!["x".repeat(51)]).is_err());
        assert!(valid_tags(vec!["a/b".into()]).is_err());
        assert!(valid_tags((0..21).map(|i| i.to_string()).collect()).is_err());
        assert_eq!(valid_tags(vec!["Ünïcode".into()]).unwrap(), ["ünïcode"]);
    }

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(format_ms(1_893_456_000_000), "2030-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_893_456_000_120), "2030-01-01T00:00:00.120Z");
    }
}
