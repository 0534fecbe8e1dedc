-- One account's part of a rebuild: its balances from the ledger, or one open order's
-- reservation from trading, written into the state of the rebuilding epoch only.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:order:<order_id> (or the balances key again)
-- KEYS[3] risk:epoch
-- ARGV[1] the rebuilding epoch   ARGV[2] 'balance' or 'order'
-- 'balance': ARGV[3] asset  ARGV[4] total (the ledger's balance: set, not added)
-- 'order':   ARGV[3] asset  ARGV[4] amount held  ARGV[5] side  ARGV[6] symbol  ARGV[7] price_ticks
--           ARGV[8] now, in milliseconds
-- Returns 1 when written, -1 when the epoch is gone (another rebuild started), 0 when the
-- order was written before (a page sent again).
if not epoch_is(KEYS[3], ARGV[1]) then
  return -1
end
if ARGV[2] == 'halt' then
  redis.call('HSET', KEYS[1], '@halted', '1')
  return 1
end
if ARGV[2] == 'balance' then
  redis.call('HSET', KEYS[1], ARGV[3] .. ':total', ARGV[4])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], 'asset', ARGV[3], 'amount', ARGV[4], 'original', ARGV[4],
  'side', ARGV[5], 'symbol', ARGV[6], 'price_ticks', ARGV[7], 'reserved_at', ARGV[8])
if hincr(KEYS[1], ARGV[3] .. ':reserved', ARGV[4]) == nil then
  return -1
end
return 1
