-- Advance a source's cursor, never moving it back.
-- KEYS[1] risk:cursor:<source>   ARGV[1] sequence
-- Returns the cursor after the call.
local current = redis.call('GET', KEYS[1])
if current and ge(current, ARGV[1]) then
  return current
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
