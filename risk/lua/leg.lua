-- One account's leg of an event (a trade's side, a release, a ledger deposit), applied at most once.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:order:<order_id>   KEYS[3] risk:{acct}:applied
-- KEYS[4] risk:epoch
-- ARGV[1] source  ARGV[2] op id (sequence*4 + leg)  ARGV[3] reservation cap: the order's
-- reservation becomes min(current, cap), and the order key goes when it reaches 0; '-1'
-- leaves the reservation alone (a trade already in a rebuilt state's open orders)
-- ARGV[4] the caller's epoch   ARGV[5..] pairs of asset, signed delta of that asset's total
-- Returns 0 when the op was applied before (skipped), 1 when applied (plain integers:
-- the common answers, the cheapest to read back),
-- {-1, reason, detail...} when refused: then nothing of the leg changed, and the
-- account's later ops from this source are refused until this one succeeds;
-- {-2, 'STALE'} when the caller's epoch is gone (nothing changed).
if not epoch_is(KEYS[4], ARGV[4]) then
  return {-2, 'STALE'}
end
local source, op = ARGV[1], ARGV[2]
local applied = redis.call('HGET', KEYS[3], source)
if applied and ge(applied, op) then
  return 0
end
local halt_field = 'halted:' .. source
local halted = redis.call('HGET', KEYS[3], halt_field)
if halted and halted ~= op then
  return {-1, 'HALTED', halted}
end

local fields, deltas = {}, {}
local function undo()
  for j = #fields, 1, -1 do
    hincr(KEYS[1], fields[j], neg(deltas[j]))
  end
  redis.call('HSET', KEYS[3], halt_field, op)
end
for i = 5, #ARGV, 2 do
  local field, delta = ARGV[i] .. ':total', ARGV[i + 1]
  if hincr(KEYS[1], field, delta) == nil then
    undo()
    return {-1, 'OVERFLOW', ARGV[i]}
  end
  fields[#fields + 1] = field
  deltas[#deltas + 1] = delta
end
for i = 1, #fields do
  local value = hget_int(KEYS[1], fields[i])
  if is_negative(value) then
    undo()
    return {-1, 'NEGATIVE_TOTAL', ARGV[3 + 2 * i], value}
  end
end

local order = redis.call('HMGET', KEYS[2], 'asset', 'amount')
if order[1] and ARGV[3] ~= '-1' then
  local current, cap = order[2], ARGV[3]
  if not ge(cap, current) then
    local reserved_field = order[1] .. ':reserved'
    hincr(KEYS[1], reserved_field, neg(current))
    hincr(KEYS[1], reserved_field, cap)
    if cap == '0' then
      redis.call('DEL', KEYS[2])
    else
      redis.call('HSET', KEYS[2], 'amount', cap)
    end
  end
end
redis.call('HSET', KEYS[3], source, op)
if halted then
  redis.call('HDEL', KEYS[3], halt_field)
end
return 1
