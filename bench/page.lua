-- wrk script: GET one dashboard page with a session cookie, counting non-200 answers.
--
--   wrk ... -s bench/page.lua http://127.0.0.1:PORT -- "hop_session=…" /app/links?q=x

local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

failed = 0

init = function(args)
  if args[2] == nil then
    error("usage: -s page.lua URL -- COOKIE PATH")
  end
  wrk.headers["Cookie"] = args[1]
  wrk.path = args[2]
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
