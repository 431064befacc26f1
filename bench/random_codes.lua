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
