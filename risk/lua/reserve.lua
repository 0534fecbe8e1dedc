-- Reserve: check total - reserved >= amount and hold the amount, atomically,
-- once per order id, in a state risk serves from (risk:ready is the current epoch).
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:order:<order_id>
-- KEYS[3] risk:epoch   KEYS[4] risk:ready
-- ARGV[1] asset  ARGV[2] amount (positive)  ARGV[3] side  ARGV[4] symbol  ARGV[5] price_ticks
-- ARGV[6] the caller's epoch   ARGV[7] now, in milliseconds (when the reservation was made)
-- Returns '1 <asset> <amount>' when held (for an order held before: its first
-- answer): one string, the cheapest answer to read back (asset codes have no spaces);
-- {0, reason} when refused (and then nothing changed).
if not epoch_is(KEYS[3], ARGV[6]) or redis.call('GET', KEYS[4]) ~= ARGV[6] then
  return {0, 'RISK_REBUILDING'}
end
local first = redis.call('HMGET', KEYS[2], 'asset', 'original', 'amount')
if first[1] then
  return '1 ' .. first[1] .. ' ' .. (first[2] or first[3])
end
if redis.call('HEXISTS', KEYS[1], '@halted') == 1 then
  return {0, 'ACCOUNT_HALTED'}
end
local asset, amount = ARGV[1], ARGV[2]
local total_field, reserved_field = asset .. ':total', asset .. ':reserved'
local had_reserved = redis.call('HEXISTS', KEYS[1], reserved_field) == 1
local reserved = hincr(KEYS[1], reserved_field, amount)
if reserved == nil then
  return {0, 'INSUFFICIENT_BALANCE'}
end
if not ge(hget_int(KEYS[1], total_field), reserved) then
  if had_reserved then
    hincr(KEYS[1], reserved_field, neg(amount))
  else
    redis.call('HDEL', KEYS[1], reserved_field)
  end
  return {0, 'INSUFFICIENT_BALANCE'}
end
redis.call('HSET', KEYS[2], 'asset', asset, 'amount', amount, 'original', amount,
  'side', ARGV[3], 'symbol', ARGV[4], 'price_ticks', ARGV[5], 'reserved_at', ARGV[7])
return '1 ' .. asset .. ' ' .. amount
