-- One account's legs of a batch from one source (a trade's side, a release, a ledger deposit), in
-- order, each applied at most once, in one call (one slot: the account's).
-- KEYS[1] risk:{acct}:balances   KEYS[2] risk:{acct}:applied   KEYS[3] risk:epoch
-- KEYS[3 + n] risk:{acct}:order:<order_id> of the n-th leg
-- ARGV[1] source   ARGV[2] the caller's epoch
-- then one argument per leg: '<op id> <reservation cap>' followed by ' <asset> <delta>' for each
-- signed delta of an asset's total (op id: sequence*4 + leg). The cap: the order's reservation becomes
-- min(current, cap), and the order key goes when it reaches 0; '-1' leaves the reservation alone
-- (a trade already in a rebuilt state's open orders, a deposit). While a replace of the order is
-- marked (its 'replacing' field, set by reserve.lua's grow) a cap above 0 leaves the reservation
-- alone too and is remembered as 'skipped' (the lowest); 0 still drops it (the order is closed).
-- 's<n>': the reservation drops by n (a budget-only market buy's trade spent n), not below 0.
-- 'r<n>': an OrderReplaced: min(current, n), and the replace mark goes.
-- 'e<replace id>': a ReplaceFenced: when the order is marked with that replace id, the hold drops by
-- the grow's 'replace_extra' (not below 0), then to 'skipped' if lower, and the mark goes (what
-- reserve.lua's 'E' does); otherwise nothing.
-- Returns -1 when the caller's epoch is gone (nothing changed); the number of legs applied when
-- none was refused (a plain integer: the common answer, the cheapest to read back); otherwise one
-- string, the legs' answers joined by '|': '1' applied, '0' applied before (skipped),
-- '-1 <reason> <detail>...' refused: then nothing of the leg changed, and the account's later ops
-- from this source are refused (HALTED) until this one succeeds.
-- Totals and reservations move by HINCRBY (exact in 64 bits; its answer's sign is exact even
-- where a double is not); orders and the applied marks are read once and written once, at the end.
local balances, applied_key, source = KEYS[1], KEYS[2], ARGV[1]
if not epoch_is(KEYS[3], ARGV[2]) then
  return -1
end
local halt_field = 'halted:' .. source
local marks = redis.call('HMGET', applied_key, source, halt_field)
local applied, halted = marks[1], marks[2]
local was_applied, was_halted = applied, halted

-- Orders by key: {asset, amount held, whether it changed, replace mark or false, lowest cap
-- skipped or false, whether the mark or skipped changed, the mark's replace_extra} or false
-- (none); the keys read, in order.
local orders, touched = {}, {}
local answers, applied_count, refused = {}, 0, false
-- A leg's op id, cap and {asset, delta, asset, delta...}.
local function parse(leg)
  local op, cap, a, x, b, y = string.match(leg, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  if op then -- the common case: a trade's side moves two assets
    return op, cap, {a, x, b, y}
  end
  local rest
  op, cap, rest = string.match(leg, '^(%S+) (%S+)(.*)$')
  local deltas = {}
  for asset, delta in string.gmatch(rest or '', ' (%S+) (%S+)') do
    deltas[#deltas + 1] = asset
    deltas[#deltas + 1] = delta
  end
  return op, cap, deltas
end

for n = 3, #ARGV do
  local k = n + 1
  local op, cap, deltas = parse(ARGV[n])
  if not op then
    return redis.error_reply('malformed leg ' .. ARGV[n])
  end
  local first, last = 1, #deltas
  if applied and ge(applied, op) then
    answers[#answers + 1] = '0'
  elseif halted and halted ~= op then
    answers[#answers + 1] = '-1 HALTED ' .. halted
    refused = true
  else
    -- The totals move one delta at a time; the ones moved are moved back if the leg is refused.
    local problem, moved, totals = nil, first, {}
    for j = first, last, 2 do
      local total = redis.pcall('HINCRBY', balances, deltas[j] .. ':total', deltas[j + 1])
      if type(total) == 'table' then
        problem = 'OVERFLOW ' .. deltas[j]
        break
      end
      totals[deltas[j]] = total
      moved = j + 2
    end
    if not problem then
      for j = first, last, 2 do
        if totals[deltas[j]] < 0 then
          local value = redis.call('HGET', balances, deltas[j] .. ':total')
          problem = 'NEGATIVE_TOTAL ' .. deltas[j] .. ' ' .. value
          break
        end
      end
    end
    if problem then
      for j = moved - 2, first, -2 do
        redis.call('HINCRBY', balances, deltas[j] .. ':total', neg(deltas[j + 1]))
      end
      halted = op
      answers[#answers + 1] = '-1 ' .. problem
      refused = true
    else
      if cap ~= '-1' then
        local key = KEYS[k]
        local order = orders[key]
        if order == nil then
          local got = redis.call('HMGET', key, 'asset', 'amount', 'replacing', 'skipped', 'replace_extra')
          if got[1] then
            order = {got[1], got[2], false, got[3] or false, got[4] or false, false, got[5] or '0'}
          else
            order = false
          end
          orders[key] = order
          touched[#touched + 1] = key
        end
        if order then
          local kind, value = string.sub(cap, 1, 1), string.sub(cap, 2)
          local target = nil
          if kind == 's' then
            target = add(order[2], neg(value))
            if is_negative(target) then
              target = '0'
            end
          elseif kind == 'r' then
            if not ge(value, order[2]) then
              target = value
            end
            if order[4] or order[5] then
              order[4], order[5], order[6] = false, false, true
            end
          elseif kind == 'e' then
            if order[4] == value then
              target = hold_after_replace(order[2], order[7], order[5])
              order[4], order[5], order[6] = false, false, true
            end
          elseif order[4] and cap ~= '0' then
            if not (order[5] and ge(cap, order[5])) then
              order[5], order[6] = cap, true
            end
          elseif not ge(cap, order[2]) then
            target = cap
          end
          if target and target ~= order[2] then
            local reserved_field = order[1] .. ':reserved'
            local change = add(target, neg(order[2]))
            if change then
              redis.pcall('HINCRBY', balances, reserved_field, change)
            else
              redis.pcall('HINCRBY', balances, reserved_field, neg(order[2]))
              redis.pcall('HINCRBY', balances, reserved_field, target)
            end
            order[2] = target
            order[3] = true
          end
        end
      end
      applied = op
      halted = nil
      applied_count = applied_count + 1
      answers[#answers + 1] = '1'
    end
  end
end

for _, key in ipairs(touched) do
  local order = orders[key]
  if order and order[2] == '0' and (order[3] or order[6]) then
    redis.call('DEL', key)
  elseif order then
    if order[3] then
      redis.call('HSET', key, 'amount', order[2])
    end
    if order[6] then
      if order[4] then
        redis.call('HSET', key, 'skipped', order[5])
      else
        redis.call('HDEL', key, 'replacing', 'replace_extra', 'skipped')
      end
    end
  end
end
local changed = {}
if applied ~= was_applied then
  changed[#changed + 1] = source
  changed[#changed + 1] = applied
end
if halted and halted ~= was_halted then
  changed[#changed + 1] = halt_field
  changed[#changed + 1] = halted
end
if #changed > 0 then
  redis.call('HSET', applied_key, unpack(changed))
end
if was_halted and not halted then
  redis.call('HDEL', applied_key, halt_field)
end
if refused then
  return table.concat(answers, '|')
end
return applied_count
