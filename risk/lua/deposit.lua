-- Credit a deposit once per deposit id.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:deposits
-- ARGV[1] deposit id  ARGV[2] asset  ARGV[3] amount (positive)
-- Returns 1 when credited, 0 when this deposit id was credited before,
-- -1 when the total would not fit in 64 bits (nothing changed).
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
if hincr(KEYS[1], ARGV[2] .. ':total', ARGV[3]) == nil then
  return -1
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
