--[[
settle: close a hold as charged, exactly once.

The balance moved when the hold was taken, so the `settle` ledger entry has amount 0 and records the
charge in `charged`. Images the safety checker filtered are given back when the hold was taken with a
refund per image (SAFETY_REFUND): `charged` is the rest, and a `release` entry with the reason
`content_filtered` returns the refund to the balance, in the same step. A hold already settled or
released is left alone and reported as such.

KEYS[1]  hold hash           <prefix>:hold:<job id>
KEYS[2]  open holds zset     <prefix>:holds
KEYS[3]  account holds set   <prefix>:account:<account id>:holds
KEYS[4]  ledger stream       <prefix>:account:<account id>:ledger
KEYS[5]  balance             <prefix>:account:<account id>:balance
ARGV[1]  job id
ARGV[2]  now, Unix ms
ARGV[3]  seconds to keep the closed hold (so a late duplicate still finds it)
ARGV[4]  images of the job the safety checker filtered

Returns one of
  {'settled', amount, ledger_entry_id}
  {'already_settled', amount}
  {'already_released', amount}
  {'not_found'}
]]
local hold, open_holds, account_holds, ledger, balance_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job, now, keep, filtered = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4] or '0')

local h = redis.call('HMGET', hold, 'amount', 'state', 'charged', 'refund_per_image')
local amount, state = h[1], h[2]
if not amount then return {'not_found'} end
if state == 'settled' then return {'already_settled', h[3] or amount} end
if state == 'released' then return {'already_released', amount} end

-- integers as text: a Lua number may print as 1e+15
local refund = math.min(tonumber(amount), filtered * tonumber(h[4] or '0'))
local charged = string.format('%.0f', tonumber(amount) - refund)
redis.call('HSET', hold, 'state', 'settled', 'closed_at', now, 'charged', charged)
redis.call('EXPIRE', hold, keep)
redis.call('ZREM', open_holds, job)
redis.call('SREM', account_holds, job)
local id = redis.call('XADD', ledger, '*', 'type', 'settle', 'amount', '0', 'charged', charged, 'job_id', job, 'at', now)
if refund > 0 then
  refund = string.format('%.0f', refund)
  redis.call('INCRBY', balance_key, refund)
  redis.call('XADD', ledger, '*', 'type', 'release', 'amount', refund, 'job_id', job, 'reason', 'content_filtered', 'at', now)
end
return {'settled', charged, id}
