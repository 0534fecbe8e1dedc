-- An account halted or resumed by the ledger (its trade was parked, or the halt lifted), once.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:applied   KEYS[3] risk:epoch
-- ARGV[1] source ('@ledger')  ARGV[2] op id  ARGV[3] the caller's epoch  ARGV[4] '1' halt, '0' resume
-- A halted account's balances hash carries '@halted': reserve.lua refuses its new orders.
-- Returns 1 when applied, 0 when applied before, -2 when the caller's epoch is gone.
if not epoch_is(KEYS[3], ARGV[3]) then
  return -2
end
local applied = redis.call('HGET', KEYS[2], ARGV[1])
if applied and ge(applied, ARGV[2]) then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], '@halted', '1')
else
  redis.call('HDEL', KEYS[1], '@halted')
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
