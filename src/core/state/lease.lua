-- callback-guard fleet limits: lease up to N tokens from 1 to 4 token
-- buckets at once, all or nothing per token (issue #15).
-- KEYS[i]   bucket i (a hash: t = tokens, ms = last refill, Redis clock)
-- ARGV[1]   tokens wanted (1 or more)
-- ARGV[1+4(i-1)+1..4]  bucket i: rps, burst, level (tokens the bucket
--           must hold for one draw: 1, or a shedding reserve), idle ttl ms
-- Each token granted is one draw that every bucket allows (tokens >= level
-- before the draw), so k tokens need tokens - (k - 1) >= level everywhere.
-- Refill is continuous at rps up to burst; a missing key is a full bucket.
-- Returns {granted, retry_after_ms, refused_mask}: when nothing is granted,
-- the ms until every refusing bucket allows one draw, and bit i-1 set for
-- each bucket i that refused.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local want = tonumber(ARGV[1])
local n = #KEYS
local state = {}
local grant = want
for i = 1, n do
  local base = 1 + 4 * (i - 1)
  local rps = tonumber(ARGV[base + 1])
  local burst = tonumber(ARGV[base + 2])
  local level = tonumber(ARGV[base + 3])
  local h = redis.call('HMGET', KEYS[i], 't', 'ms')
  local t = tonumber(h[1])
  local ms = tonumber(h[2])
  if t == nil or ms == nil then
    t = burst
    ms = now
  elseif now > ms then
    t = math.min(burst, t + (now - ms) * rps / 1000)
    ms = now
  else
    t = math.min(burst, t)
  end
  local allows = 0
  if t >= level then
    allows = math.floor(t - level) + 1
  end
  if allows < grant then
    grant = allows
  end
  state[i] = {t, ms, rps, level, tonumber(ARGV[base + 4])}
end
local retry = 0
local mask = 0
for i = 1, n do
  local s = state[i]
  if s[1] < s[4] then
    mask = mask + 2 ^ (i - 1)
    local wait = math.ceil((s[4] - s[1]) * 1000 / s[3])
    if wait > retry then
      retry = wait
    end
  end
  redis.call('HSET', KEYS[i], 't', tostring(s[1] - grant), 'ms', tostring(s[2]))
  redis.call('PEXPIRE', KEYS[i], s[5])
end
return {grant, retry, mask}
