-- callback-guard fleet dedup: the attempt failed (issue #15).
-- KEYS[1]  the dedup key
-- ARGV[1]  this attempt's token
-- Deletes the key only while it holds this attempt's in-flight mark: never
-- a delivered mark, never another attempt's.
-- Returns {1} deleted, {0} left alone.
if redis.call('GET', KEYS[1]) == 'f:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1}
end
return {0}
