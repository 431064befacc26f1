//! User-agent classification: browser, operating system, device type and a bot flag.
//!
//! Every redirect is classified, so this has to cost well under a microsecond. Regex-file
//! parsers (uap-core and friends) walk hundreds of patterns and can take a millisecond a
//! call; they also name thousands of browsers we have no use for. Instead the header is
//! scanned once, byte by byte: at each position only the tokens that start with that
//! (lower-cased) byte are compared, case-insensitively and without allocating, and every
//! token that matches sets a flag. Which browser, OS and device the flags mean is then
//! decided by a few ordered rules in [`classify`], where the precedence is written down
//! once (Edge, Opera, Samsung Internet, Yandex and Vivaldi all claim to be Chrome; Chrome
//! claims to be Safari; iOS claims to be macOS; Android claims to be Linux).
//!
//! Known limits, accepted: an iPad in desktop mode says it is a Mac and is counted as one;
//! in-app browsers that drop the `Safari` token are "Other"; bots that pretend to be a
//! browser cannot be told apart from one by the header alone.

/// What a `User-Agent` header says about the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Agent {
    /// "Chrome", "Firefox", "Safari", "Edge", "Opera", "Samsung Internet", "Yandex",
    /// "Vivaldi", "Internet Explorer" or "Other" (HTTP libraries, unknown browsers).
    pub browser: &'static str,
    /// "Windows", "macOS", "iOS", "Android", "Linux", "ChromeOS" or "Other".
    pub os: &'static str,
    /// "desktop", "mobile", "tablet", "bot" or "unknown".
    pub device: &'static str,
    /// A known crawler, link-preview fetcher, monitor or HTTP library, or no user agent at
    /// all. Bots still get a browser and OS when they claim one (Googlebot smartphone says
    /// Chrome on Android) so that nothing is lost; the device is "bot".
    pub bot: bool,
}

/// Headers longer than this are only scanned this far: the work per click stays bounded
/// whatever a client sends. Real user agents are under 300 bytes; the tokens that matter
/// come early.
const SCAN_LIMIT: usize = 1024;

/// Classifies a `User-Agent` header value. An empty header counts as a bot: browsers
/// always send one, scripts often do not.
pub fn classify(user_agent: &str) -> Agent {
    let ua = user_agent.trim().as_bytes();
    if ua.is_empty() {
        return Agent {
            browser: OTHER,
            os: OTHER,
            device: "bot",
            bot: true,
        };
    }
    let seen = scan(&ua[..ua.len().min(SCAN_LIMIT)]);
    let has = |flag: u32| seen & flag != 0;
    let bot = has(BOT);

    let browser = if has(EDGE) {
        "Edge"
    } else if has(OPERA) {
        "Opera"
    } else if has(SAMSUNG) {
        "Samsung Internet"
    } else if has(YANDEX) {
        "Yandex"
    } else if has(VIVALDI) {
        "Vivaldi"
    } else if has(CHROME) {
        "Chrome"
    } else if has(FIREFOX) {
        "Firefox"
    } else if has(IE) {
        "Internet Explorer"
    } else if has(SAFARI) {
        "Safari"
    } else {
        OTHER
    };

    // Windows Phone also says Android, iOS also says Mac OS X, Android and ChromeOS also say
    // Linux: the more specific platform is tested first.
    let os = if has(WINDOWS_PHONE) {
        "Windows"
    } else if has(IPHONE | IPAD) {
        "iOS"
    } else if has(ANDROID) {
        "Android"
    } else if has(CHROME_OS) {
        "ChromeOS"
    } else if has(WINDOWS) {
        "Windows"
    } else if has(MAC) {
        "macOS"
    } else if has(LINUX) {
        "Linux"
    } else {
        OTHER
    };

    let device = if bot {
        "bot"
    } else if has(IPAD) {
        "tablet"
    } else if has(IPHONE) || has(WINDOWS_PHONE) {
        "mobile"
    } else if has(TABLET) {
        "tablet"
    } else if has(ANDROID) {
        // Android phones say "Mobile"; tablets leave it out (Google's own guidance).
        if has(MOBILE) { "mobile" } else { "tablet" }
    } else if has(MOBILE) {
        "mobile"
    } else if has(WINDOWS | MAC | LINUX | CHROME_OS) {
        "desktop"
    } else {
        "unknown"
    };

    Agent {
        browser,
        os,
        device,
        bot,
    }
}

const OTHER: &str = "Other";

// What the scan can see, one bit each.
const EDGE: u32 = 1;
const OPERA: u32 = 1 << 1;
const SAMSUNG: u32 = 1 << 2;
const YANDEX: u32 = 1 << 3;
const VIVALDI: u32 = 1 << 4;
const CHROME: u32 = 1 << 5;
const FIREFOX: u32 = 1 << 6;
const IE: u32 = 1 << 7;
const SAFARI: u32 = 1 << 8;
const WINDOWS: u32 = 1 << 9;
const WINDOWS_PHONE: u32 = 1 << 10;
const IPHONE: u32 = 1 << 11;
const IPAD: u32 = 1 << 12;
const ANDROID: u32 = 1 << 13;
const CHROME_OS: u32 = 1 << 14;
const MAC: u32 = 1 << 15;
const LINUX: u32 = 1 << 16;
const MOBILE: u32 = 1 << 17;
const TABLET: u32 = 1 << 18;
const BOT: u32 = 1 << 19;

/// Where a token may match.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// Anywhere: long tokens that do not occur by accident.
    Anywhere,
    /// Only at the start of a word (the byte before is not a letter or digit): short
    /// tokens such as `curl` or `opr/` that could hide inside other words.
    WordStart,
    /// The generic `bot`: only at the end of a word (`Googlebot/2.1`, `bot.html`,
    /// `AdsBot-Google`), and never the phone maker Cubot (`CUBOT_X30`, `Cubot P40`).
    BotWordEnd,
}

struct Token {
    /// Lower-case ASCII; compared case-insensitively.
    text: &'static [u8],
    flag: u32,
    at: At,
}

const fn t(text: &'static str, flag: u32, at: At) -> Token {
    Token {
        text: text.as_bytes(),
        flag,
        at,
    }
}

/// Every token the scan looks for, sorted by first byte (checked at compile time by
/// [`first_byte_index`]).
///
/// The bot tokens: crawlers and link-preview fetchers whose names the generic words miss
/// (`slurp`, `facebookexternalhit`, `whatsapp`), headless browsers, HTTP libraries and
/// command-line clients, and the generic `bot` (at a word end), `crawl`, `spider`,
/// `preview` and `monitor`. The named crawlers that the generic words already catch
/// (Googlebot, bingbot, Baiduspider…) are not scanned for twice; the test
/// `named_crawlers_are_caught` keeps the list of them and checks each one.
#[rustfmt::skip]
const TOKENS: &[Token] = &[
    t("aiohttp", BOT, At::Anywhere),
    t("android", ANDROID, At::Anywhere),
    t("apache-httpclient", BOT, At::Anywhere),
    t("axios", BOT, At::WordStart),
    t("bot", BOT, At::BotWordEnd),
    t("chrome/", CHROME, At::Anywhere),
    t("chromium/", CHROME, At::Anywhere),
    t("crawl", BOT, At::Anywhere),
    t("crios/", CHROME, At::WordStart),
    t("cros", CHROME_OS, At::WordStart),
    t("curl", BOT, At::WordStart),
    t("edg", EDGE, At::WordStart),
    t("facebookexternalhit", BOT, At::Anywhere),
    t("firefox/", FIREFOX, At::Anywhere),
    t("fxios/", FIREFOX, At::WordStart),
    t("go-http-client", BOT, At::Anywhere),
    t("headlesschrome", BOT, At::Anywhere),
    t("ipad", IPAD, At::WordStart),
    t("iphone", IPHONE, At::WordStart),
    t("ipod", IPHONE, At::WordStart),
    t("java/", BOT, At::WordStart),
    t("libwww-perl", BOT, At::Anywhere),
    t("linux", LINUX, At::WordStart),
    t("mac os x", MAC, At::WordStart),
    t("macintosh", MAC, At::WordStart),
    t("mobile", MOBILE, At::WordStart),
    t("monitor", BOT, At::Anywhere),
    t("msie ", IE, At::WordStart),
    t("node-fetch", BOT, At::Anywhere),
    t("okhttp", BOT, At::Anywhere),
    t("opera", OPERA, At::WordStart),
    t("opr/", OPERA, At::WordStart),
    t("opt/", OPERA, At::WordStart),
    t("phantomjs", BOT, At::Anywhere),
    t("preview", BOT, At::Anywhere),
    t("python-requests", BOT, At::Anywhere),
    t("python-urllib", BOT, At::Anywhere),
    t("safari", SAFARI, At::Anywhere),
    t("samsungbrowser", SAMSUNG, At::Anywhere),
    t("scrapy", BOT, At::Anywhere),
    t("slurp", BOT, At::Anywhere),
    t("spider", BOT, At::Anywhere),
    t("tablet", TABLET, At::WordStart),
    t("trident/", IE, At::WordStart),
    t("vivaldi", VIVALDI, At::WordStart),
    t("wget", BOT, At::WordStart),
    t("whatsapp", BOT, At::Anywhere),
    t("windows", WINDOWS, At::WordStart),
    t("windows phone", WINDOWS_PHONE, At::WordStart),
    t("yabrowser", YANDEX, At::WordStart),
];

/// `FIRST[b]..FIRST[b + 1]` is the range of [`TOKENS`] that start with byte `b`.
const FIRST: [u16; 257] = first_byte_index(TOKENS);

/// One bit per pair of lower-case bytes that begins some token (8 KiB, stays in L1): most
/// positions in a header start no token, and this rejects them with one load.
static PAIRS: [u64; 1024] = first_pairs(TOKENS);

const fn pair(first: u8, second: u8) -> usize {
    (first as usize) << 8 | second as usize
}

const fn first_pairs(tokens: &[Token]) -> [u64; 1024] {
    let mut bits = [0u64; 1024];
    let mut i = 0;
    while i < tokens.len() {
        let p = pair(tokens[i].text[0], tokens[i].text[1]);
        bits[p / 64] |= 1 << (p % 64);
        i += 1;
    }
    bits
}

const fn first_byte_index(tokens: &[Token]) -> [u16; 257] {
    let mut index = [0u16; 257];
    let mut i = 0;
    while i < tokens.len() {
        let text = tokens[i].text;
        assert!(
            text.len() >= 3,
            "tokens are at least three bytes (the scan compares two first)"
        );
        let mut j = 0;
        while j < text.len() {
            assert!(
                !text[j].is_ascii_uppercase(),
                "tokens are compared lower-case"
            );
            j += 1;
        }
        if i > 0 {
            assert!(
                tokens[i - 1].text[0] <= text[0],
                "TOKENS must be sorted by first byte"
            );
        }
        i += 1;
    }
    // index[b] = number of tokens whose first byte is < b.
    let mut b = 0;
    let mut k = 0;
    while b < 257 {
        while k < tokens.len() && (tokens[k].text[0] as usize) < b {
            k += 1;
        }
        index[b] = k as u16;
        b += 1;
    }
    index
}

/// One pass over the header; returns the flags of every token found.
fn scan(ua: &[u8]) -> u32 {
    let mut seen = 0;
    let mut next = ua.first().map_or(0, u8::to_ascii_lowercase);
    for i in 0..ua.len() {
        let b = next;
        next = ua.get(i + 1).map_or(0, u8::to_ascii_lowercase);
        let p = pair(b, next);
        if PAIRS[p / 64] & (1 << (p % 64)) == 0 {
            continue;
        }
        let b = b as usize;
        let candidates = &TOKENS[FIRST[b] as usize..FIRST[b + 1] as usize];
        for token in candidates {
            if token.text[1] == next && seen & token.flag == 0 && matches_at(ua, i, token) {
                seen |= token.flag;
            }
        }
    }
    seen
}

/// Whether `token` is at `ua[i..]`, where the first two bytes are already known to match.
fn matches_at(ua: &[u8], i: usize, token: &Token) -> bool {
    let end = i + token.text.len();
    if end > ua.len() || !ua[i + 2..end].eq_ignore_ascii_case(&token.text[2..]) {
        return false;
    }
    let word_start = i == 0 || !ua[i - 1].is_ascii_alphanumeric();
    match token.at {
        At::Anywhere => true,
        At::WordStart => word_start,
        At::BotWordEnd => {
            let word_end = end == ua.len() || !ua[end].is_ascii_alphabetic();
            let cubot = i >= 2
                && ua[i - 2..i].eq_ignore_ascii_case(b"cu")
                && (i == 2 || !ua[i - 3].is_ascii_alphanumeric());
            word_end && !cubot
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../tests/data/user_agents.rs");

    #[test]
    fn classifies_real_user_agents() {
        let mut failures = Vec::new();
        for &(ua, browser, os, device, bot) in USER_AGENTS {
            let want = Agent {
                browser,
                os,
                device,
                bot,
            };
            let got = classify(ua);
            if got != want {
                failures.push(format!("{ua}\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(USER_AGENTS.len() >= 40);
    }

    #[test]
    fn empty_or_blank_user_agent_is_a_bot() {
        for ua in ["", "   "] {
            let agent = classify(ua);
            assert!(agent.bot);
            assert_eq!(
                (agent.browser, agent.os, agent.device),
                ("Other", "Other", "bot")
            );
        }
    }

    #[test]
    fn bot_matches_at_word_end_but_not_inside_cubot() {
        let bots = [
            "Googlebot/2.1",
            "Mozilla/5.0 (compatible; SomeNewBot/1.0)",
            "my-bot",
            "see http://example.com/bot.html",
            "AdsBot-Google (+http://www.google.com/adsbot.html)",
            "bot",
        ];
        for ua in bots {
            assert!(classify(ua).bot, "{ua}");
        }
        let people = [
            "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 9; Cubot P40 Build/PPR1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/110.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 11; cubot) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/110.0.0.0 Mobile Safari/537.36",
            // "bot" inside a word, not at its end.
            "Mozilla/5.0 (X11; Linux x86_64; Botswana) Gecko/20100101 Firefox/121.0",
        ];
        for ua in people {
            let agent = classify(ua);
            assert!(!agent.bot, "{ua}");
            assert_ne!(agent.device, "bot", "{ua}");
        }
    }

    #[test]
    fn matching_ignores_case() {
        assert!(classify("GOOGLEBOT/2.1").bot);
        assert!(classify("Python-Requests/2.31").bot);
        let agent = classify("MOZILLA/5.0 (WINDOWS NT 10.0) FIREFOX/121.0");
        assert_eq!(
            (agent.browser, agent.os, agent.device),
            ("Firefox", "Windows", "desktop")
        );
    }

    /// Known crawlers, link-preview fetchers and automation, by the name in their user
    /// agent. Some are tokens of their own in [`TOKENS`], the others are caught by the
    /// generic words; either way each must come out as a bot, whatever its case.
    const NAMED_BOTS: &[&str] = &[
        "Googlebot",
        "bingbot",
        "Slurp",
        "DuckDuckBot",
        "Baiduspider",
        "YandexBot",
        "facebookexternalhit",
        "Twitterbot",
        "LinkedInBot",
        "Slackbot",
        "Discordbot",
        "TelegramBot",
        "WhatsApp",
        "Applebot",
        "AhrefsBot",
        "SemrushBot",
        "MJ12bot",
        "PetalBot",
        "GPTBot",
        "ClaudeBot",
        "CCBot",
        "Bytespider",
        "HeadlessChrome",
        "PhantomJS",
        "python-requests",
        "Python-urllib",
        "aiohttp",
        "Go-http-client",
        "okhttp",
        "Java",
        "libwww-perl",
        "curl",
        "Wget",
        "Apache-HttpClient",
        "axios",
        "node-fetch",
        "Scrapy",
        "SiteCrawler",
        "MySpider",
        "LinkPreview",
        "UptimeMonitor",
        "Some-Bot",
    ];

    #[test]
    fn named_crawlers_are_caught() {
        for name in NAMED_BOTS {
            for name in [name.to_string(), name.to_lowercase(), name.to_uppercase()] {
                let ua = format!("Mozilla/5.0 (compatible; {name}/1.0; +https://example.com)");
                let agent = classify(&ua);
                assert!(agent.bot, "{ua}");
                assert_eq!(agent.device, "bot", "{ua}");
            }
        }
    }

    #[test]
    fn every_bot_token_is_caught() {
        for token in TOKENS.iter().filter(|t| t.flag == BOT) {
            let name = std::str::from_utf8(token.text).unwrap();
            let ua = format!("Mozilla/5.0 (compatible; {name}/1.0; +https://example.com)");
            assert!(classify(&ua).bot, "{ua}");
        }
    }

    #[test]
    fn short_tokens_need_a_word_start() {
        // "curl" inside a word, "opr/" and "edg" inside words: not a bot, not Opera/Edge.
        let agent = classify(
            "Mozilla/5.0 (X11; Linux x86_64; securlx) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 xopr/1 hedge/2",
        );
        assert_eq!(
            agent,
            Agent {
                browser: "Chrome",
                os: "Linux",
                device: "desktop",
                bot: false
            }
        );
    }

    #[test]
    fn work_is_bounded_on_huge_headers() {
        // A token past the scan limit is not seen; the call still returns promptly.
        let ua = format!("{} Googlebot/2.1", "x".repeat(SCAN_LIMIT));
        assert!(!classify(&ua).bot);
        let ua = format!("Googlebot/2.1 {}", "x".repeat(100_000));
        assert!(classify(&ua).bot);
    }

    #[test]
    fn odd_bytes_do_not_panic() {
        for ua in ["é", "\u{0}", "ipa", "bo", "cubot", "€bot", "a\u{ff}b"] {
            let _ = classify(ua);
        }
        assert!(!classify("cubot").bot);
        assert!(classify("€bot").bot);
    }
}
