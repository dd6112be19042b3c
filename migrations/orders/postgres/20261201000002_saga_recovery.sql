-- Saga recovery (extracted-services/orders, `recovery` module): a pending
-- order older than the recovery timeout is claimed by setting
-- recovery_claimed_until (a lease) with a conditional UPDATE, so that of
-- several instances exactly one compensates it. Once claimed, the saga that
-- created the order can no longer mark it placed. A lease that runs out (a
-- recoverer that died) lets the next pass claim the order again.
ALTER TABLE orders ADD COLUMN recovery_claimed_until TEXT;
CREATE INDEX orders_pending_by_age ON orders (created_at) WHERE state = 'pending';
