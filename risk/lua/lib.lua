-- Helpers shared by every risk script; the store prepends this file to each one.
-- Amounts are canonical integer strings (no leading zeros, "-" for negatives) of up to 64 bits.
-- Lua numbers are doubles, exact only below 2^53, so an amount is never held in one double:
-- arithmetic and comparison are done on doubles only where they are exact, otherwise on two
-- limbs of the digit string (add, ge), and every result is a canonical string again.

local function is_negative(s)
  return string.byte(s, 1) == 45
end

local function neg(s)
  if s == '0' then
    return '0'
  end
  if is_negative(s) then
    return string.sub(s, 2)
  end
  return '-' .. s
end

-- Compare two non-negative canonical digit strings: -1, 0 or 1.
local function cmp_digits(a, b)
  if #a ~= #b then
    if #a < #b then
      return -1
    end
    return 1
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then
        return -1
      end
      return 1
    end
  end
  return 0
end

-- Doubles hold every integer below 2^53 exactly: sums of such amounts are done in doubles. Larger
-- amounts (up to 64 bits) are split in two limbs, high * 10^9 + low, each exact in a double.
local EXACT = 9007199254740992
local BASE = 1000000000

local function exact(s)
  local n = tonumber(s)
  if n and n < EXACT and n > -EXACT then
    return n
  end
  return nil
end

-- (high, low) of a canonical integer string: its value is high * BASE + low (both of its sign).
local function limbs(s)
  local negative, digits = is_negative(s), s
  if negative then
    digits = string.sub(s, 2)
  end
  local high, low = 0, 0
  if #digits > 9 then
    high, low = tonumber(string.sub(digits, 1, -10)), tonumber(string.sub(digits, -9))
  else
    low = tonumber(digits)
  end
  if negative then
    return -high, -low
  end
  return high, low
end

-- The canonical string of high * BASE + low (any signs, |low| < 2 * BASE).
local function from_limbs(high, low)
  local carry = math.floor(low / BASE)
  high, low = high + carry, low - carry * BASE -- now 0 <= low < BASE
  if high >= 0 then
    if high == 0 then
      return string.format('%d', low)
    end
    return string.format('%d%09d', high, low)
  end
  if low == 0 then
    return string.format('-%d000000000', -high)
  end
  high, low = -high - 1, BASE - low -- the value is -(high * BASE + low)
  if high == 0 then
    return string.format('-%d', low)
  end
  return string.format('-%d%09d', high, low)
end

-- Whether a canonical integer string fits in 64 bits (what HINCRBY would accept).
local function fits_int64(s)
  if #s < 19 then
    return true
  end
  if is_negative(s) then
    return cmp_digits(string.sub(s, 2), '9223372036854775808') <= 0
  end
  return cmp_digits(s, '9223372036854775807') <= 0
end

-- a >= b for canonical integer strings, either of which may be negative.
local function ge(a, b)
  local a_length, b_length = #a, #b
  if a_length < 16 and b_length < 16 then -- both exact in doubles
    return tonumber(a) >= tonumber(b)
  end
  local a_negative, b_negative = is_negative(a), is_negative(b)
  if a_negative ~= b_negative then
    return b_negative
  end
  if a_length ~= b_length then -- of one sign: the longer is the larger in magnitude
    return (a_length > b_length) ~= a_negative
  end
  local a_high, a_low = limbs(a)
  local b_high, b_low = limbs(b)
  -- a - b = high * BASE + low with |low| < 2 * BASE: its sign once low is brought into [0, BASE)
  return a_high - b_high + math.floor((a_low - b_low) / BASE) >= 0
end

-- a + b for canonical integer strings of 64 bits, exactly, as a canonical string (which may be
-- past 64 bits: see fits_int64); nil when a or b is past 64 bits.
local function add(a, b)
  local x, y = exact(a), exact(b)
  if x and y then
    local sum = x + y
    if sum < EXACT and sum > -EXACT then
      return string.format('%d', sum)
    end
  end
  if not (fits_int64(a) and fits_int64(b)) then
    return nil
  end
  local a_high, a_low = limbs(a)
  local b_high, b_low = limbs(b)
  return from_limbs(a_high + b_high, a_low + b_low)
end

-- The hold of an order whose replace ends unapplied (EndReplace, a ReplaceFenced event): `amount`
-- less the grow's `extra` (not below 0), lowered to `skipped` (the lowest cap a trade left while
-- the order was marked, or false).
local function hold_after_replace(amount, extra, skipped)
  local after = add(amount, neg(extra))
  if is_negative(after) then
    after = '0'
  end
  if skipped and not ge(skipped, after) then
    after = skipped
  end
  return after
end

local function hget_int(key, field)
  local value = redis.call('HGET', key, field)
  if not value then
    return '0'
  end
  return value
end

-- HINCRBY by an integer string; the new value as a string, or nil (and no
-- change) when the result would not fit in 64 bits.
local function hincr(key, field, delta)
  local reply = redis.pcall('HINCRBY', key, field, delta)
  if type(reply) == 'table' and reply.err then
    return nil
  end
  return redis.call('HGET', key, field)
end


-- The epoch of risk's state (risk:epoch, passed as a key) must be the caller's: after a
-- flush or a rebuild a caller of an older epoch changes nothing (its view is gone).
local function epoch_is(key, epoch)
  return epoch ~= '' and redis.call('GET', key) == epoch
end
