-- One account's reserves and releases of a batch, in order, in one call (one slot: the account's).
-- Reserve: check total - reserved >= amount and hold the amount, atomically, once per order id,
-- in a state risk serves from (risk:ready is the current epoch); with a client order id, claim it
-- in the same step. Release (compensation): drop an order's whole reservation if it has one.
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:epoch   KEYS[3] risk:ready
-- then per op risk:{acct}:order:<order_id>, and after it, for a 'C' op, the op's claim key
-- gw:{acct}:coid:<client order id> (backbone/claims.py; the account's hash tag, so the same slot)
-- ARGV[1] the caller's epoch   ARGV[2] now, in milliseconds (when reservations are made)
-- ARGV[3] a claim's time to live, in seconds
-- then one argument per op: 'R <asset> <amount (positive)> <side> <symbol> <price_ticks>',
-- 'C <asset> <amount> <side> <symbol> <price_ticks> <order id>' (a reserve that claims its client
-- order id for the order: when the claim key names another order the answer is '@' and nothing
-- changes; when it is free or names this order the reserve runs as 'R', and the key is set to the
-- order id, with the time to live, only when the order holds its reservation ('+' or '='): a
-- refused reserve leaves no claim), 'L'
-- (a release), 'G <asset> <amount> <replace id>' (grow an open order's hold to at least the amount
-- before a replace, and mark the order: its 'replacing' and 'replace_extra' fields; leg.lua leaves
-- a marked hold alone until the OrderReplaced event), or 'E <replace id>' (trading refused that
-- replace: give back replace_extra, lower the hold to the lowest cap skipped while marked, unmark)
-- Returns -1 when the caller's epoch is gone (nothing changed: a rebuild restores only open
-- orders); otherwise one string, the ops' answers joined by '|' (the cheapest answer to read back;
-- asset codes and reasons have no '|' or spaces), or, when an answer is '@', an array: that string
-- followed by the holders of the '@' answers, in order (an order id may hold a '|'):
--   '+'               held: the op's own asset and amount
--   '=<asset> <amt>'  held before (the order's first answer)
--   '!<reason>'       refused (and nothing of it changed)
--   '@<ms>'           refused: another order (the next holder) holds the client order id, for ms
--                     more milliseconds (-1: no expiry); nothing changed
--   '-<asset> <amt>'  released what the order held;  '-' the order held nothing
--   '^<asset> <amt>'  grown by amt (0 when it held enough) and marked
-- Every value is read at most once and every key written once, at the end.
local balances, epoch, now, claim_ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not epoch_is(KEYS[2], epoch) then
  return -1
end
local ready = redis.call('GET', KEYS[3]) == epoch

local answers = {}
local function refuse(refusal) -- refusal: {0, reason}
  answers[#answers + 1] = '!' .. refusal[2]
end

-- The account's balance fields as read (or computed), and which of them changed.
local values, changed, halted = {}, {}, nil
local function load(asset)
  local total_field, reserved_field = asset .. ':total', asset .. ':reserved'
  if values[reserved_field] == nil then
    local got = redis.call('HMGET', balances, '@halted', total_field, reserved_field)
    halted = got[1]
    values[total_field] = got[2] or '0'
    values[reserved_field] = got[3] or '0'
  end
  return total_field, reserved_field
end
local function set(field, value)
  if not changed[field] then
    changed[#changed + 1] = field
    changed[field] = true
  end
  values[field] = value
end

-- Orders by key: {asset, first answer's amount, amount held, replace mark or false, its extra,
-- lowest cap skipped while marked or false} or false (none); whether a release dropped it; the
-- fields of the reserve that created it here; whether a grow or an end changed it; the keys read.
local orders, dropped, created, resized, touched = {}, {}, {}, {}, {}
-- Claims by key: {the order id it names, or false (free); its milliseconds to live, or nil until
-- read}; the keys this call sets, in order; the holders of '@' answers, in order.
local claims, claiming, holders = {}, {}, {}
local function claim_of(claim_key)
  local claim = claims[claim_key]
  if claim == nil then
    claim = {redis.call('GET', claim_key)}
    claims[claim_key] = claim
  end
  return claim
end
local function take(claim_key, order_id)
  local claim = claims[claim_key]
  if not claiming[claim_key] then
    claiming[#claiming + 1] = claim_key
    claiming[claim_key] = true
  end
  claim[1], claim[2] = order_id, tonumber(claim_ttl) * 1000
end
-- Move the order's hold (and the account's reserved) to `amount`.
local function hold(order, amount)
  local _, reserved_field = load(order[1])
  set(reserved_field, add(values[reserved_field], add(amount, neg(order[3]))))
  order[3] = amount
end
local k = 3 -- the key of the op
for i = 4, #ARGV do
  k = k + 1
  local key = KEYS[k]
  local order = orders[key]
  if order == nil then
    order = false
    if redis.call('EXISTS', key) == 1 then
      local got = redis.call('HMGET', key, 'asset', 'original', 'amount', 'replacing', 'replace_extra', 'skipped')
      if got[1] then
        order = {got[1], got[2] or got[3], got[3], got[4] or false, got[5] or '0', got[6] or false}
      end
    end
    orders[key] = order
    touched[#touched + 1] = key
  end
  local grow_asset, want, grow_id = string.match(ARGV[i], '^G (%S+) (%S+) (%S+)$')
  local end_id = string.match(ARGV[i], '^E (%S+)$')
  local asset, amount, side, symbol, price = string.match(ARGV[i], '^R (%S+) (%S+) (%S+) (%S+) (%S+)$')
  local claim_key, claimant, claim = nil, nil, nil
  if not asset then
    asset, amount, side, symbol, price, claimant =
      string.match(ARGV[i], '^C (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
    if claimant then
      k = k + 1
      claim_key = KEYS[k]
    end
  end
  if asset and ready and claim_key then
    claim = claim_of(claim_key)
  end
  if asset then
    if not ready then
      refuse({0, 'RISK_REBUILDING'})
    elseif claim and claim[1] and claim[1] ~= claimant then
      if claim[2] == nil then
        claim[2] = redis.call('PTTL', claim_key)
      end
      answers[#answers + 1] = '@' .. claim[2]
      holders[#holders + 1] = claim[1]
    elseif order then
      answers[#answers + 1] = '=' .. order[1] .. ' ' .. order[2]
      if claim then
        take(claim_key, claimant)
      end
    else
      local total_field, reserved_field = load(asset)
      if halted then
        refuse({0, 'ACCOUNT_HALTED'})
      else
        local reserved = add(values[reserved_field], amount)
        if reserved and fits_int64(reserved) and ge(values[total_field], reserved) then
          set(reserved_field, reserved)
          orders[key] = {asset, amount, amount}
          created[key] = {asset, amount, side, symbol, price}
          answers[#answers + 1] = '+'
          if claim then
            take(claim_key, claimant)
          end
        else
          refuse({0, 'INSUFFICIENT_BALANCE'})
        end
      end
    end
  elseif grow_asset then
    if not ready then
      refuse({0, 'RISK_REBUILDING'})
    elseif not order then
      refuse({0, 'ORDER_NOT_OPEN'})
    elseif order[1] ~= grow_asset then
      refuse({0, 'INVALID_ORDER'})
    elseif order[4] == grow_id then -- the same grow again: its first answer
      answers[#answers + 1] = '^' .. order[1] .. ' ' .. order[5]
    elseif order[4] then
      refuse({0, 'REPLACE_IN_FLIGHT'})
    else
      local total_field, reserved_field = load(grow_asset)
      local extra = '0'
      if not ge(order[3], want) then
        extra = add(want, neg(order[3]))
      end
      local reserved = add(values[reserved_field], extra)
      if halted then
        refuse({0, 'ACCOUNT_HALTED'})
      elseif extra == '0' or (reserved and fits_int64(reserved) and ge(values[total_field], reserved)) then
        if extra ~= '0' then
          hold(order, add(order[3], extra))
        end
        order[4], order[5], order[6] = grow_id, extra, false
        resized[key] = true
        answers[#answers + 1] = '^' .. order[1] .. ' ' .. extra
      else
        refuse({0, 'INSUFFICIENT_BALANCE'})
      end
    end
  elseif end_id then
    if order and order[4] == end_id then
      local before = order[3]
      local after = hold_after_replace(order[3], order[5], order[6])
      hold(order, after)
      order[4], order[5], order[6] = false, '0', false
      answers[#answers + 1] = '-' .. order[1] .. ' ' .. add(before, neg(after))
      if after == '0' then
        orders[key] = false
        dropped[key] = true
      else
        resized[key] = true
      end
    else
      answers[#answers + 1] = '-'
    end
  elseif ARGV[i] == 'L' then
    if order then
      local _, reserved_field = load(order[1])
      set(reserved_field, add(values[reserved_field], neg(order[3])))
      orders[key] = false
      created[key] = nil
      dropped[key] = true
      answers[#answers + 1] = '-' .. order[1] .. ' ' .. order[3]
    else
      answers[#answers + 1] = '-'
    end
  else
    return redis.error_reply('malformed op ' .. ARGV[i])
  end
end

if #changed > 0 then
  local pairs_ = {}
  for _, field in ipairs(changed) do
    pairs_[#pairs_ + 1] = field
    pairs_[#pairs_ + 1] = values[field]
  end
  redis.call('HSET', balances, unpack(pairs_))
end
for _, key in ipairs(touched) do
  local new = created[key]
  if new then
    redis.call('HSET', key, 'asset', new[1], 'amount', new[2], 'original', new[2],
      'side', new[3], 'symbol', new[4], 'price_ticks', new[5], 'reserved_at', now)
  elseif dropped[key] then
    redis.call('DEL', key)
  end
  local order = orders[key]
  if resized[key] and order then
    if order[4] then
      redis.call('HSET', key, 'amount', order[3], 'replacing', order[4], 'replace_extra', order[5])
      redis.call('HDEL', key, 'skipped')
    else
      redis.call('HSET', key, 'amount', order[3])
      redis.call('HDEL', key, 'replacing', 'replace_extra', 'skipped')
    end
  end
end
for _, claim_key in ipairs(claiming) do
  redis.call('SET', claim_key, claims[claim_key][1], 'EX', claim_ttl)
end
if #holders > 0 then
  local reply = {table.concat(answers, '|')}
  for _, holder in ipairs(holders) do
    reply[#reply + 1] = holder
  end
  return reply
end
return table.concat(answers, '|')
