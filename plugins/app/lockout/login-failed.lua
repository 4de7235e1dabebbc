-- One more failed login: KEYS the failure counter and the lock; ARGV the threshold, the
-- first lock (ms), the longest lock (ms), how long failures are remembered (ms).
-- From the threshold on, lock for base × 2^(failures − threshold), capped. Both keys
-- carry the same hash tag (one cluster slot).
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local threshold = tonumber(ARGV[1])
if n >= threshold then
  local ms = math.min(tonumber(ARGV[2]) * 2 ^ (n - threshold), tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], '1', 'PX', math.floor(ms))
end
return n
