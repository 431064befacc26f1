-- wrk script: POST /api/v1/links/bulk with 1,000 links per request.
--
--   wrk ... -s bench/bulk.lua http://127.0.0.1:PORT/api/v1/links/bulk -- API_KEY
--
-- The body is built once: 1,000 URLs of about 60 bytes. URLs may repeat across
-- requests (hop does not deduplicate URLs); every item gets a new generated code. The
-- rate that counts is rows added to the database per second, which bench/api.sh reads;
-- here every answer that is not 200 is counted and printed.

local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

failed = 0

init = function(args)
  if args[1] == nil then
    error("usage: -s bulk.lua URL -- API_KEY")
  end
  local items = {}
  for i = 1, 1000 do
    items[i] = string.format('{"url":"https://example.com/bulk/some/path/%d?ref=bench"}', i)
  end
  wrk.method = "POST"
  wrk.body = '{"links":[' .. table.concat(items, ",") .. ']}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
end

response = function(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  end
end

done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("failed")
  end
  io.write(string.format("bench-lua failed=%d\n", total))
end
