-- Journal lines are only ever read by account (a card's transactions, a
-- balance's history), newest first, so key them by (account, reference)
-- and drop the separate reference key: every line written was paying for
-- two index entries where one serves every read. References stay unique:
-- they are generated here, one per line.
--
-- Building the new key locks journal_lines against writes while it runs,
-- which on a large journal is a maintenance window, not a rolling upgrade.

-- +goose Up
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_pkey;
DROP INDEX journal_lines_by_account;
ALTER TABLE journal_lines ADD PRIMARY KEY (account, reference);

-- +goose Down
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_pkey;
ALTER TABLE journal_lines ADD PRIMARY KEY (reference);
CREATE INDEX journal_lines_by_account ON journal_lines (account, reference);
