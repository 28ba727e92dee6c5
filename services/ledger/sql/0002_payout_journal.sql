-- Payouts are journaled too: a payout debits the contributor's account and credits its
-- "paid" account, so a contributor's balance is what it has been allocated and not yet
-- paid (its carried balance).
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check
    CHECK (kind IN ('consumer', 'contributor', 'paid'));
