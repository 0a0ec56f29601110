-- Every text column compares byte by byte (collation "C"), whatever the
-- database's locale. The keys on the authorization path are all text
-- (references, owners, account ids), and under a locale such as C.UTF-8 or
-- en_US.UTF-8 each B-tree comparison of two differing keys copies both
-- strings and calls strcoll. In a profile of the authorization benchmark
-- B-tree comparisons took 6% of the machine; with byte order the
-- database's CPU per authorization fell by about 3%. Byte order is the
-- order these values need: references, account ids, codes and keys are
-- ASCII, and it is the order SQLite's BINARY collation already gives.
-- Columns added later must say COLLATE "C" too
-- (TestTextColumnsCompareBytewise checks), or comparing them with these
-- would fail for want of one collation.
--
-- The indexes on every text column are rebuilt, which locks each table
-- against writes while it runs: on a large database, a maintenance window.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE col record;
BEGIN
    FOR col IN SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND data_type = 'text' AND table_name <> 'goose_db_version'
        ORDER BY table_name, ordinal_position
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "C"', col.table_name, col.column_name);
    END LOOP;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE col record;
BEGIN
    FOR col IN SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND data_type = 'text' AND collation_name = 'C'
        ORDER BY table_name, ordinal_position
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "default"', col.table_name, col.column_name);
    END LOOP;
END $$;
-- +goose StatementEnd
