-- GET /{code} for a code picked at random from every stored link. @CODES@ is
-- replaced by run.sh with a file of codes, one per line.
local codes = {}

init = function()
  for line in io.lines("@CODES@") do
    codes[#codes + 1] = line
  end
  math.randomseed(os.time())
end

request = function()
  return wrk.format("GET", "/" .. codes[math.random(#codes)])
end
