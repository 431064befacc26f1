-- wrk script: POST /api/v1/links with a URL no other request of the run uses.
--
--   wrk ... -s bench/create.lua http://127.0.0.1:PORT/api/v1/links -- API_KEY RUN_TAG
--
-- URLs are https://example.com/bench/<RUN_TAG>/<thread>/<n>: run.sh passes a tag that
-- differs for every wrk invocation, so repeated populate runs never resend a URL
-- (wrk's math.random is not seeded, so random numbers alone would repeat).
--
-- Every answer that is not 201 Created is counted. wrk calls request()/response() in
-- one Lua state per thread but done() in the main state, so the counts are read back
-- through the thread objects collected in setup(); a plain global would always be 0
-- in done(). done() prints one machine-readable line that run.sh parses and fails on.

local threads = {}

setup = function(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local auth, tag
local counter = 0
created = 0   -- globals so that done() can read them with thread:get()
failed = 0
last_failure = ""

init = function(args)
  if args[1] == nil or args[2] == nil then
    error("usage: -s create.lua URL -- API_KEY RUN_TAG")
  end
  auth = "Bearer " .. args[1]
  tag = args[2] .. "/" .. wrk.thread:get("id")
end

local headers = {}

request = function()
  counter = counter + 1
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = auth
  return wrk.format("POST", nil, headers,
    '{"url":"https://example.com/bench/' .. tag .. "/" .. counter .. '"}')
end

response = function(status, _, body)
  if status == 201 then
    created = created + 1
  else
    failed = failed + 1
    last_failure = status .. " " .. string.sub(body or "", 1, 200)
  end
end

done = function()
  local ok, bad, last = 0, 0, ""
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("created")
    bad = bad + thread:get("failed")
    if thread:get("last_failure") ~= "" then
      last = thread:get("last_failure")
    end
  end
  io.write(string.format("bench-lua created=%d non201=%d\n", ok, bad))
  if bad > 0 then
    io.write("bench-lua last non-201 answer: " .. last:gsub("\n", " ") .. "\n")
  end
end
