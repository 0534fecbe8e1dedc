-- Advance a source's cursor, never moving it back.
-- KEYS[1] risk:cursor:<source>   KEYS[2] risk:epoch   ARGV[1] sequence   ARGV[2] the caller's epoch
-- Returns the cursor after the call; -1 when the caller's epoch is gone (nothing changed).
if not epoch_is(KEYS[2], ARGV[2]) then
  return -1
end
local current = redis.call('GET', KEYS[1])
if current and ge(current, ARGV[1]) then
  return current
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
