-- wrk script: GET the URL as a browser would, with the headers click analytics read.
--
--   wrk ... -s bench/browser.lua http://127.0.0.1:PORT/CODE
--
-- A desktop Chrome user agent, a referrer and an Accept-Language, so that the
-- analytics pipeline does its full work (no bot shortcut) for every redirect.

wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
  "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
wrk.headers["Referer"] = "https://news.ycombinator.com/item?id=1"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
