-- Which facade replica made a change: with several replicas on one store,
-- the audit log must say which one acted (an automatic rollback is judged
-- by one replica's own error budget). NULL for changes recorded before
-- replicas were named.
ALTER TABLE route_transitions ADD COLUMN replica TEXT;
