-- Release (compensation): drop an order's whole reservation if it has one.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:order:<order_id>   KEYS[3] risk:epoch
-- ARGV[1] the caller's epoch
-- Returns {asset, amount released}; {'', '0'} when the order held nothing; {'', '-1'}
-- when the caller's epoch is gone (nothing changed: a rebuild restores only open orders).
if not epoch_is(KEYS[3], ARGV[1]) then
  return {'', '-1'}
end
local order = redis.call('HMGET', KEYS[2], 'asset', 'amount')
if not order[1] then
  return {'', '0'}
end
hincr(KEYS[1], order[1] .. ':reserved', neg(order[2]))
redis.call('DEL', KEYS[2])
return {order[1], order[2]}
