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

local function num(s)
  return string.format('%.17g', s)
end

local function decide(keys, args)
  local n = #keys / 2
  local tiers = tonumber(args[1])
  if n < 1 or n ~= math.floor(n) or tiers == nil or tiers < 1 or #args ~= 1 + 6 * tiers + 3 * n then
    return redis.error_reply('godel: expected 2 keys per decision; ARGV: T, 6 per tier, 3 per decision')
  end
  local tier = {}
  for i = 1, tiers do
    local d = {}
    for j = 1, 6 do
      d[j] = tonumber(args[1 + 6 * (i - 1) + j])
      if d[j] == nil then
        return redis.error_reply('godel: tier ' .. i .. ': argument ' .. j .. ' is not a number')
      end
    end
    if d[1] <= 0 or d[2] < 1 or d[3] < 0 or d[4] <= 0 or d[5] < 0 or d[6] < 0 then
      return redis.error_reply('godel: invalid tier ' .. i
        .. ' (need rate > 0, capacity >= 1, debt_limit > 0, others >= 0)')
    end
    tier[i] = d
  end
  local p = {}
  local base = 1 + 6 * tiers
  for i = 1, n do
    local o = base + 3 * (i - 1)
    local d = tier[tonumber(args[o + 1])]
    local cost, add = tonumber(args[o + 2]), tonumber(args[o + 3])
    if d == nil or cost == nil or add == nil or cost < 0 or add < 0 then
      return redis.error_reply('godel: invalid decision ' .. i
        .. ' (need a tier index in 1..T, cost >= 0, add >= 0)')
    end
    p[i] = { d[1], d[2], cost, add, d[3], d[4], d[5], d[6] }
  end

  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local out = {}
  for i = 1, n do
    local rate, cap, cost, add = p[i][1], p[i][2], p[i][3], p[i][4]
    local half_life, dlimit, cooldown, per_point = p[i][5] * 1000, p[i][6], p[i][7] * 1000, p[i][8]
    local bkey, dkey = keys[2 * i - 1], keys[2 * i]
    local status, retry_ms, level = 0, 0, 0

    if half_life > 0 then
      local h = redis.call('HMGET', dkey, 'd', 'ts', 'until')
      local stored, ts, hold = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]) or 0
      local at = now
      if ts ~= nil and at < ts then at = ts end
      if stored ~= nil and ts ~= nil then
        level = stored * math.pow(2, -(at - ts) / half_life)
      end
      local was_blocked = at < hold
      level = level + add
      if level >= dlimit and add > 0 then
        -- Time for the debt to decay back to the limit; a fresh block also lasts the cooldown.
        local decay = half_life * math.log(level / dlimit) / math.log(2)
        local want = at + decay
        if not was_blocked then want = at + math.max(cooldown, decay) end
        if want > hold then hold = want end
      end
      if at < hold then
        status = 2
        retry_ms = math.ceil((hold - at) / 1000)
      end
      if level > 0.001 or at < hold then
        -- Keep the key until the debt has decayed to nothing and any block is over.
        local fade = 0
        if level > 0.001 then fade = half_life * math.log(level / 0.001) / math.log(2) end
        local ttl = math.max(fade, hold - at) / 1000 + 1000
        redis.call('HSET', dkey, 'd', num(level), 'ts', fmt(at), 'until', fmt(hold))
        redis.call('PEXPIRE', dkey, fmt(math.ceil(ttl)))
      elseif stored ~= nil then
        redis.call('DEL', dkey)
      end
    end

    local tokens = cap
    if status == 0 and cost <= 0 then
      status = 3
    elseif status == 0 then
      local c = math.min(cap, cost + per_point * level)
      local h = redis.call('HMGET', bkey, 'tk', 'ts')
      local stored, ts = tonumber(h[1]), tonumber(h[2])
      local at = now
      if stored ~= nil and ts ~= nil then
        if at < ts then at = ts end
        tokens = math.min(cap, stored + (at - ts) * rate / 1000000)
      end
      if tokens >= c then
        tokens = tokens - c
      else
        status = 1
        retry_ms = math.ceil((c - tokens) * 1000 / rate)
      end
      redis.call('HSET', bkey, 'tk', num(tokens), 'ts', fmt(at))
      redis.call('PEXPIRE', bkey, fmt(math.ceil((cap - tokens) * 1000 / rate) + 1000))
    end
    out[#out + 1] = status
    out[#out + 1] = num(tokens)
    out[#out + 1] = retry_ms
    out[#out + 1] = num(level)
  end
  return out
end
