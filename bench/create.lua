-- POST /api/v1/links with a distinct URL per request. @KEY@ is replaced by run.sh.
-- Any answer other than 201 is counted and printed at the end: a create benchmark
-- that silently measured errors would be worthless.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @KEY@"

local counter = 0
local failures = 0

request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil,
    '{"url":"https://example.com/bench/' .. counter .. '/' .. math.random(1e9) .. '"}')
end

response = function(status)
  if status ~= 201 then
    failures = failures + 1
  end
end

done = function()
  if failures > 0 then
    io.stderr:write("create.lua: " .. failures .. " responses were not 201\n")
  end
end
