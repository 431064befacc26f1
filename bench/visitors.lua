-- wrk script: GET the URL as many different browsers would: every request comes from
-- its own address (X-Forwarded-For; hop must trust 127.0.0.1 as a proxy), with one of
-- several user agents, referrers and languages.
--
--   wrk ... -s bench/visitors.lua http://127.0.0.1:PORT/CODE
--
-- 65,536 prepared requests are sent in turn: at the load of these benchmarks an address
-- comes back about every half second, so nearly every visit the analytics queue holds
-- between two drains (250 ms) is a visitor it has not seen, and the capture copies its
-- headers, and enrichment classifies and places it, one by one.

local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}
local referrers = {
  "https://news.ycombinator.com/item?id=1",
  "https://www.google.com/",
  "https://t.co/abc",
  nil,
}
local languages = { "en-US,en;q=0.9", "fr-FR,fr;q=0.8", "de", "sv-SE" }

local requests = {}
local count = 65536
local next_request = 1

function init(args)
  for i = 1, count do
    local n = i * 2654435761 % 4294967296 -- spread over the address space
    local headers = {
      ["User-Agent"] = agents[i % #agents + 1],
      ["Accept-Language"] = languages[i % #languages + 1],
      ["X-Forwarded-For"] = string.format("%d.%d.%d.%d",
        1 + n % 223, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, 1 + i % 254),
    }
    local referrer = referrers[i % 4 + 1]
    if referrer then
      headers["Referer"] = referrer
    end
    requests[i] = wrk.format("GET", nil, headers)
  end
end

function request()
  local r = requests[next_request]
  next_request = next_request % count + 1
  return r
end
