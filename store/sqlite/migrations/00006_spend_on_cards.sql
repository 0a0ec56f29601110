-- A card's spend in its current UTC day and month moves onto the card's own
-- row. The authorization batch locks the card row; a read of card_spend in
-- the same statement saw the statement's snapshot, so a batch that had
-- waited for another process's batch on the same card could decide on
-- spend that no longer held, and two servers could approve past a daily
-- limit. Locked and re-read with the card, the windows are always current;
-- and a batch now updates one row per card instead of two per approval.
--
-- spend_day is "d20261124", spend_month "m202611"; an amount counts only
-- while its window is current, and the first approval in a new window
-- restarts it.

-- +goose Up
ALTER TABLE cards ADD COLUMN spend_day TEXT NOT NULL DEFAULT '';
ALTER TABLE cards ADD COLUMN spend_day_amount BIGINT NOT NULL DEFAULT 0 CHECK (spend_day_amount >= 0);
ALTER TABLE cards ADD COLUMN spend_month TEXT NOT NULL DEFAULT '';
ALTER TABLE cards ADD COLUMN spend_month_amount BIGINT NOT NULL DEFAULT 0 CHECK (spend_month_amount >= 0);
UPDATE cards SET
    spend_day = COALESCE((SELECT MAX(period) FROM card_spend WHERE card = cards.reference AND period LIKE 'd%'), ''),
    spend_month = COALESCE((SELECT MAX(period) FROM card_spend WHERE card = cards.reference AND period LIKE 'm%'), '');
UPDATE cards SET
    spend_day_amount = COALESCE((SELECT amount FROM card_spend WHERE card = cards.reference AND period = cards.spend_day), 0),
    spend_month_amount = COALESCE((SELECT amount FROM card_spend WHERE card = cards.reference AND period = cards.spend_month), 0);
DROP TABLE card_spend;

-- +goose Down
CREATE TABLE card_spend (
    card   TEXT   NOT NULL,
    period TEXT   NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (card, period)
);
INSERT INTO card_spend (card, period, amount) SELECT reference, spend_day, spend_day_amount FROM cards WHERE spend_day <> '';
INSERT INTO card_spend (card, period, amount) SELECT reference, spend_month, spend_month_amount FROM cards WHERE spend_month <> '';
ALTER TABLE cards DROP COLUMN spend_month_amount;
ALTER TABLE cards DROP COLUMN spend_month;
ALTER TABLE cards DROP COLUMN spend_day_amount;
ALTER TABLE cards DROP COLUMN spend_day;
