-- Release (compensation): drop an order's whole reservation if it has one.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:order:<order_id>
-- Returns {asset, amount released}; {'', '0'} when the order held nothing.
local order = redis.call('HMGET', KEYS[2], 'asset', 'amount')
if not order[1] then
  return {'', '0'}
end
hincr(KEYS[1], order[1] .. ':reserved', neg(order[2]))
redis.call('DEL', KEYS[2])
return {order[1], order[2]}
