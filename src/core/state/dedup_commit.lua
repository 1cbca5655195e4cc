-- callback-guard fleet dedup: the upstream answered 2xx (issue #15).
-- KEYS[1]  the dedup key
-- ARGV[1]  this attempt's token
-- ARGV[2]  dedup window, ms (dedup.window_s)
-- The delivery is delivered whatever the key holds now (our in-flight mark,
-- nothing because it expired, or a later attempt's mark): a 2xx is final.
-- Returns {1} when the key still held this attempt's mark, else {0}.
local ours = redis.call('GET', KEYS[1]) == 'f:' .. ARGV[1]
redis.call('SET', KEYS[1], 'd', 'PX', ARGV[2])
if ours then
  return {1}
end
return {0}
