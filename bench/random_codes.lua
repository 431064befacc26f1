-- wrk script: GET /<code> for a code picked uniformly at random from a file.
--
--   wrk ... -s bench/random_codes.lua http://127.0.0.1:PORT/ -- CODES_FILE [PREFIX [API_KEY]]
--
-- With PREFIX the path is PREFIX/<code> (bench/api.sh: /api/v1/links), and with
-- API_KEY every request carries `Authorization: Bearer API_KEY`.
--
-- The same script drives hop (cold redirects) and nginx (which answers 302 for any
-- path), so the nginx run shows what this client can push at most.
--
-- The whole request text for every code is built once in init(), which wrk runs
-- before its clock starts; request() then only indexes a table. Calling wrk.format()
-- per request would make this Lua client the limit much earlier.
--
-- With BENCH_BROWSER=1 in the environment every request also carries a browser's
-- User-Agent, Referer and Accept-Language (those of bench/browser.lua), so hop stores
-- each visit as a human with its breakdowns, as real traffic is. Without it wrk sends
-- no User-Agent, and every visit is a bot: counted, but in no breakdown.
--
-- No response() hook on purpose: defining one makes wrk copy every header and body
-- into Lua. wrk itself still counts answers >= 400 ("Non-2xx or 3xx responses"),
-- which run.sh treats as errors, and run.sh checks with curl beforehand that a
-- sampled code answers 302.

local requests = {}
local n = 0

init = function(args)
  local file = args[1] or error("usage: -s random_codes.lua URL -- CODES_FILE [PREFIX [API_KEY]]")
  local prefix = args[2] or ""
  local headers = {}
  if os.getenv("BENCH_BROWSER") == "1" then
    headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
      "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
    headers["Referer"] = "https://news.ycombinator.com/item?id=1"
    headers["Accept-Language"] = "en-US,en;q=0.9"
  end
  if args[3] then
    headers["Authorization"] = "Bearer " .. args[3]
  end
  for code in io.lines(file) do
    if code ~= "" then
      n = n + 1
      requests[n] = wrk.format("GET", prefix .. "/" .. code, headers)
    end
  end
  if n == 0 then
    error("random_codes.lua: no codes in " .. file)
  end
  -- Seeded so that two runs do not replay the same sequence of codes.
  math.randomseed(os.time())
end

request = function()
  return requests[math.random(n)]
end
