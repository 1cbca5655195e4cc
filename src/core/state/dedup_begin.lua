-- callback-guard fleet dedup: first sight of a delivery (issue #15).
-- KEYS[1]  the dedup key ({prefix}dedup:{channel}:{hash of the delivery key})
-- ARGV[1]  this attempt's token (random, per request)
-- ARGV[2]  in-flight mark lifetime, ms (dedup.in_flight_s)
-- Returns {0, 0}      first: now marked in flight by this attempt
--         {1, pttl}   another attempt is in flight (answer 409, retry-after)
--         {2, pttl}   delivered inside the window (answer duplicate)
if redis.call('SET', KEYS[1], 'f:' .. ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, 0}
end
local ttl = redis.call('PTTL', KEYS[1])
if redis.call('GET', KEYS[1]) == 'd' then
  return {2, ttl}
end
return {1, ttl}
