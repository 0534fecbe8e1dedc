-- Helpers shared by every risk script; the store prepends this file to each one.
-- Amounts are canonical integer strings (no leading zeros, "-" for negatives).
-- Lua numbers are doubles, so amounts are never turned into them: arithmetic is
-- HINCRBY (exact int64) and comparison works on the digit strings.

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

-- a >= b for canonical integer strings, either of which may be negative.
local function ge(a, b)
  local a_negative, b_negative = is_negative(a), is_negative(b)
  if a_negative ~= b_negative then
    return b_negative
  end
  if a_negative then
    return cmp_digits(string.sub(a, 2), string.sub(b, 2)) <= 0
  end
  return cmp_digits(a, b) >= 0
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
