-- An instrument learned from a trading source's event, stored at most once per event.
-- KEYS[1] risk:instruments   KEYS[2] {risk:instruments}:applied (same slot)   KEYS[3] risk:epoch
-- ARGV[1] source  ARGV[2] the event's sequence  ARGV[3] symbol  ARGV[4] the instrument (proto JSON)
-- ARGV[5] the caller's epoch
-- The instrument and the sequence that brought it are written together, so a
-- redelivered (or older) event of the source is skipped and never overwrites a
-- later one, and an instrument is either wholly known or not at all.
-- Returns 1 when stored, 0 when the source's events up to this sequence were applied before,
-- -1 when the caller's epoch is gone (nothing changed).
if not epoch_is(KEYS[3], ARGV[5]) then
  return -1
end
local applied = redis.call('HGET', KEYS[2], ARGV[1])
if applied and ge(applied, ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
