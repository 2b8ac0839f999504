--[[
grant: an operator's movement of credits (a `grant`, or a signed `adjust`), as one ledger entry and the
matching balance change, atomically.

With a tag (ARGV[6]), the movement happens at most once per account and tag: the starting grant uses
tag "starting", so creating an account twice, or re-running a migration, grants once.
An adjust that would take the balance below zero is refused.

KEYS[1]  ledger stream       <prefix>:account:<account id>:ledger
KEYS[2]  balance             <prefix>:account:<account id>:balance
KEYS[3]  ledger accounts set <prefix>:ledger-accounts
KEYS[4]  tags set            <prefix>:account:<account id>:grant-tags
ARGV[1]  account id
ARGV[2]  type: grant | adjust
ARGV[3]  amount, signed micro-credits (integer, not 0, as text)
ARGV[4]  reason
ARGV[5]  now, Unix ms
ARGV[6]  tag ('' = none)

Returns one of
  {'ok', balance_after, ledger_entry_id}
  {'duplicate', balance}
  {'insufficient_balance', balance}
]]
local ledger, balance_key, accounts, tags = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local account, kind, amount, reason, now, tag = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local balance = redis.call('GET', balance_key) or '0'
if tag ~= '' and redis.call('SISMEMBER', tags, tag) == 1 then
  return {'duplicate', balance}
end
if tonumber(balance) + tonumber(amount) < 0 then
  return {'insufficient_balance', balance}
end

if tag ~= '' then redis.call('SADD', tags, tag) end
local after = redis.call('INCRBY', balance_key, amount)
redis.call('SADD', accounts, account)
local id = redis.call('XADD', ledger, '*', 'type', kind, 'amount', amount, 'reason', reason, 'at', now)
return {'ok', after, id}
