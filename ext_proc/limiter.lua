-- Godel's limiter: token bucket + decaying security debt, many decisions per call.
--
-- Loaded two ways from this one source (ext_proc/redis_limiter.py): as the Redis Function
-- library `godel_v1` (FUNCTION LOAD; persisted and replicated, so it survives restarts and
-- failover) and, where functions are not allowed, as an EVALSHA script.
--
-- KEYS: 2 per decision: the bucket HASH (tk = tokens, ts = µs) and the debt HASH
--       (d = points, ts = µs, until = µs). Both carry the caller's hash tag, so one decision
--       never crosses a Redis Cluster slot.
-- ARGV: T, the number of tiers in this call; then 6 numbers per tier: rate (tokens/s, > 0),
--       capacity (>= 1), half_life_ms (0 = no debt), debt_limit (> 0), cooldown_ms (>= 0),
--       cost_per_point (extra tokens per point of debt); then 3 per decision: tier (1..T),
--       cost (tokens; 0 = do not touch the bucket), add (debt points).
-- Reply: 4 per decision: status (0 allowed, 1 rate limited, 2 blocked by debt, 3 not charged),
--        tokens left (string), retry_ms (integer), debt (string).
--
-- Time is the server's TIME in integer microseconds, never a client clock, and a key's stored
-- timestamp never moves backwards (a failover to a replica whose clock is behind cannot mint
-- tokens). Every argument is checked before the first write: a script is atomic but not
-- transactional, so an error half way would leave earlier writes in place.

local function fmt(n)
  return string.format('%.0f', n)
end

local LN2 = 0.6931471805599453 -- ln 2 (the math library is not loaded while FUNCTION LOAD runs)

local function decide(keys, args)
  local n = #keys / 2
  local tiers = tonumber(args[1])
  if n < 1 or n ~= math.floor(n) or tiers == nil or tiers < 1 or #args ~= 1 + 6 * tiers + 3 * n then
    return redis.error_reply('godel: expected 2 keys per decision; ARGV: T, 6 per tier, 3 per decision')
  end
  -- Tiers: rate, capacity, half-life (µs), debt limit, cooldown (µs), cost per point.
  local rate, cap, half, dlimit, cool, per = {}, {}, {}, {}, {}, {}
  for i = 1, tiers do
    local o = 1 + 6 * (i - 1)
    rate[i], cap[i], half[i] = tonumber(args[o + 1]), tonumber(args[o + 2]), tonumber(args[o + 3])
    dlimit[i], cool[i], per[i] = tonumber(args[o + 4]), tonumber(args[o + 5]), tonumber(args[o + 6])
    if not (rate[i] and cap[i] and half[i] and dlimit[i] and cool[i] and per[i])
        or rate[i] <= 0 or cap[i] < 1 or half[i] < 0 or dlimit[i] <= 0 or cool[i] < 0
        or per[i] < 0 then
      return redis.error_reply('godel: invalid tier ' .. i
        .. ' (need rate > 0, capacity >= 1, debt_limit > 0, others >= 0)')
    end
    half[i], cool[i] = half[i] * 1000, cool[i] * 1000
  end
  local base = 1 + 6 * tiers
  for i = 1, n do
    local o = base + 3 * (i - 1)
    local ti, cost, add = tonumber(args[o + 1]), tonumber(args[o + 2]), tonumber(args[o + 3])
    if rate[ti] == nil or cost == nil or add == nil or cost < 0 or add < 0 then
      return redis.error_reply('godel: invalid decision ' .. i
        .. ' (need a tier index in 1..T, cost >= 0, add >= 0)')
    end
  end

  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local out, k = {}, 0
  for i = 1, n do
    local o = base + 3 * (i - 1)
    local ti = tonumber(args[o + 1])
    local cost, add = tonumber(args[o + 2]), tonumber(args[o + 3])
    local r, c, h = rate[ti], cap[ti], half[ti]
    local bkey, dkey = keys[2 * i - 1], keys[2 * i]
    local status, retry_ms, level = 0, 0, 0

    if h > 0 then
      local d = redis.call('HMGET', dkey, 'd', 'ts', 'until')
      local stored, ts, hold = tonumber(d[1]), tonumber(d[2]), tonumber(d[3]) or 0
      if stored ~= nil or add > 0 then
        local at = now
        if ts ~= nil and at < ts then at = ts end
        if stored ~= nil and ts ~= nil then
          level = stored * math.exp(-(at - ts) / h * LN2)
        end
        local was_blocked = at < hold
        level = level + add
        local limit = dlimit[ti]
        if level >= limit and add > 0 then
          -- Time for the debt to decay back to the limit; a fresh block also lasts the cooldown.
          local decay = h * math.log(level / limit) / LN2
          local want = at + decay
          if not was_blocked then want = at + math.max(cool[ti], decay) end
          if want > hold then hold = want end
        end
        if at < hold then
          status = 2
          retry_ms = math.ceil((hold - at) / 1000)
        end
        if level > 0.001 or at < hold then
          -- Keep the key until the debt has decayed to nothing and any block is over.
          local fade = 0
          if level > 0.001 then fade = h * math.log(level / 0.001) / LN2 end
          local ttl = math.max(fade, hold - at) / 1000 + 1000
          redis.call('HSET', dkey, 'd', tostring(level), 'ts', fmt(at), 'until', fmt(hold))
          redis.call('PEXPIRE', dkey, fmt(math.ceil(ttl)))
        else
          redis.call('DEL', dkey)
          level = 0
        end
      end
    end

    local tokens = c
    if status == 0 and cost <= 0 then
      status = 3
    elseif status == 0 then
      local need = cost + per[ti] * level
      if need > c then need = c end
      local b = redis.call('HMGET', bkey, 'tk', 'ts')
      local stored, ts = tonumber(b[1]), tonumber(b[2])
      local at = now
      if stored ~= nil and ts ~= nil then
        if at < ts then at = ts end
        tokens = stored + (at - ts) * r / 1000000
        if tokens > c then tokens = c end
      end
      if tokens >= need then
        tokens = tokens - need
      else
        status = 1
        retry_ms = math.ceil((need - tokens) * 1000 / r)
      end
      redis.call('HSET', bkey, 'tk', tostring(tokens), 'ts', fmt(at))
      redis.call('PEXPIRE', bkey, fmt(math.ceil((c - tokens) * 1000 / r) + 1000))
    end
    out[k + 1], out[k + 2], out[k + 3], out[k + 4] = status, tostring(tokens), retry_ms, tostring(level)
    k = k + 4
  end
  return out
end
