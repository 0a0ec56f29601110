-- The three foreign keys on the authorization path cost PostgreSQL a
-- trigger and a row lock (FOR KEY SHARE) for every journal line and every
-- authorization written: in a profiled batch they were about a quarter of
-- the database's time. Each is already guaranteed where the rows are
-- written, in the same transaction: a journal entry and its lines are
-- inserted together by the ledger, the accounts a line names are the ones
-- whose balances the same transaction has just moved (a missing one fails
-- the batch), and an authorization's card is locked while it is written.
-- internal/ledgercheck checks all three relations after every test that
-- moves money, on both databases. SQLite keeps its keys: there a check is an
-- in-process index lookup.

-- +goose Up
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_entry_fkey;
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_account_fkey;
ALTER TABLE authorizations DROP CONSTRAINT authorizations_card_fkey;

-- +goose Down
ALTER TABLE journal_lines ADD CONSTRAINT journal_lines_entry_fkey FOREIGN KEY (entry) REFERENCES journal_entries (reference);
ALTER TABLE journal_lines ADD CONSTRAINT journal_lines_account_fkey FOREIGN KEY (account) REFERENCES accounts (id);
ALTER TABLE authorizations ADD CONSTRAINT authorizations_card_fkey FOREIGN KEY (card) REFERENCES cards (reference);
