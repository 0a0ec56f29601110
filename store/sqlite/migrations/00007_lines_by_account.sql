-- Journal lines are only ever read by account (a card's transactions, a
-- balance's history), newest first. Here they move into a table clustered
-- on (account, reference), so a line is one b-tree insert instead of three
-- (the rowid table, its reference key and the by-account index).
-- References stay unique: they are generated here, one per line.

-- +goose Up
CREATE TABLE journal_lines_keyed (
    reference     TEXT   NOT NULL,
    entry         TEXT   NOT NULL REFERENCES journal_entries (reference),
    account       TEXT   NOT NULL REFERENCES accounts (id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    balance_after BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account, reference)
) WITHOUT ROWID;
INSERT INTO journal_lines_keyed (reference, entry, account, amount, balance_after, created_at)
    SELECT reference, entry, account, amount, balance_after, created_at FROM journal_lines;
DROP TABLE journal_lines;
ALTER TABLE journal_lines_keyed RENAME TO journal_lines;

-- +goose Down
CREATE TABLE journal_lines_by_reference (
    reference     TEXT   PRIMARY KEY,
    entry         TEXT   NOT NULL REFERENCES journal_entries (reference),
    account       TEXT   NOT NULL REFERENCES accounts (id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    balance_after BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
INSERT INTO journal_lines_by_reference (reference, entry, account, amount, balance_after, created_at)
    SELECT reference, entry, account, amount, balance_after, created_at FROM journal_lines;
DROP TABLE journal_lines;
ALTER TABLE journal_lines_by_reference RENAME TO journal_lines;
CREATE INDEX journal_lines_by_account ON journal_lines (account, reference);
