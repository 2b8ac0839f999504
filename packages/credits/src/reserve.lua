--[[
reserve: hold a job's full cost, atomically.

Checks that the account's balance covers the amount and that it has fewer than max_active open holds
(jobs queued or running), then decrements the balance, records the hold and appends a `hold` ledger
entry, in one step. A second reserve for the same job id changes nothing and returns the existing hold.

KEYS[1]  hold hash           <prefix>:hold:<job id>
KEYS[2]  open holds zset     <prefix>:holds                      (score: created at, ms)
KEYS[3]  account holds set   <prefix>:account:<account id>:holds (the account's open holds)
KEYS[4]  ledger stream       <prefix>:account:<account id>:ledger
KEYS[5]  balance             <prefix>:account:<account id>:balance
KEYS[6]  ledger accounts set <prefix>:ledger-accounts
ARGV[1]  account id
ARGV[2]  job id
ARGV[3]  amount, micro-credits (integer > 0, as text)
ARGV[4]  max open holds for the account (0 = no limit)
ARGV[5]  now, Unix ms
ARGV[6]  micro-credits given back per image the safety checker filters, at settle (0: none; SAFETY_REFUND)

Returns one of
  {'reserved', balance_after, ledger_entry_id}
  {'existing', account_id, amount, state, created_at}   state: held | settled | released
  {'insufficient_balance', balance}
  {'too_many_active_jobs', active}
Amounts stay text in this script: Lua's tostring() would write large integers as 1.2e+14.
]]
local hold, open_holds, account_holds, ledger, balance_key, accounts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local account, job, amount, max_active, now, refund_per_image = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6] or '0'

local existing = redis.call('HMGET', hold, 'account_id', 'amount', 'state', 'created_at')
if existing[1] then
  return {'existing', existing[1], existing[2], existing[3], existing[4]}
end

local balance = redis.call('GET', balance_key) or '0'
if tonumber(balance) < tonumber(amount) then
  return {'insufficient_balance', balance}
end

local active = redis.call('SCARD', account_holds)
if max_active > 0 and active >= max_active then
  return {'too_many_active_jobs', active}
end

local after = redis.call('DECRBY', balance_key, amount)
redis.call('HSET', hold, 'job_id', job, 'account_id', account, 'amount', amount, 'state', 'held', 'created_at', now, 'refund_per_image', refund_per_image)
redis.call('ZADD', open_holds, now, job)
redis.call('SADD', account_holds, job)
redis.call('SADD', accounts, account)
local id = redis.call('XADD', ledger, '*', 'type', 'hold', 'amount', '-' .. amount, 'job_id', job, 'at', now)
return {'reserved', after, id}
