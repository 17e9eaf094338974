"""ledger_post(), ledger_resolve_hold(), audit_append(): one round trip each

Revision ID: 0033
Revises: 0003
Create Date: 2026-12-16

A ledger transfer used to be two statements from the service (lock the accounts and read their
balances; then write the transfer, its postings, the balances and the hold), a hold's settlement
three (lock the hold and read it, then the same two) and an audit event three (the aggregate's
advisory lock; its last seq and hash; the insert). Each is now one call of a PL/pgSQL function
doing the same steps in the same order, with the same locks.

Why functions rather than one statement with CTEs: a VOLATILE function takes a fresh snapshot
for each statement it runs (READ COMMITTED), so what it reads after a lock includes everything
committed by whoever held that lock before. A single statement reads from the snapshot it
started with, taken before it waited: the seq after an advisory lock would be stale.

The rules stay in the service (custody.ledger.service, core.audit): ledger_post() and
audit_append() check and write only what they are given; ledger_resolve_hold() derives a
settlement's legs from the hold it has locked, as post_hold and void_hold describe them. The
tables' own guarantees (CHECKs, the deferred balance trigger, append-only triggers, UNIQUE
reference and hold resolution, the audit seq's UNIQUE) are unchanged and still refuse always.
"""
from alembic import op

revision = "0033"
down_revision = "0003"  # the ledger's tables; audit_events (0002) comes before it
branch_labels = None
depends_on = None


LEDGER_POST = """
CREATE FUNCTION ledger_post(
    p_transfer_id uuid, p_reference varchar, p_type varchar, p_reference_kind varchar, p_reference_id varchar,
    p_tx_hash varchar, p_hold_id uuid,
    -- The legs, netted per account, in the service's fixed order of account keys.
    p_owner_types varchar[], p_user_ids uuid[], p_kinds varchar[], p_currencies varchar[], p_amounts numeric[],
    -- NULL, 'create' (this transfer's id is the new hold's) or 'resolve' (p_hold_id, locked by the caller).
    p_hold_action varchar, p_hold_user_id uuid, p_hold_currency varchar, p_hold_amount numeric,
    p_hold_state varchar, p_posted_amount numeric, p_fee numeric,
    -- 'posted'; 'insufficient' (nothing written; short_leg is the 1-based leg, short_balance its
    -- balance); 'exists' (the reference had posted: nothing written, the caller replays or refuses).
    OUT outcome varchar, OUT posted_at timestamptz, OUT short_leg integer, OUT short_balance numeric
) LANGUAGE plpgsql
-- The statements over the legs' arrays (= ANY, unnest) would otherwise be planned again on every
-- call (a custom plan): the generic plan is the same index scans.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    legs integer := cardinality(p_amounts);
    account_ids uuid[] := array_fill(NULL::uuid, ARRAY[legs]);
    balances numeric[] := array_fill(NULL::numeric, ARRAY[legs]);
    created uuid[] := '{}';
    found_id uuid;
    locked record;
    i integer;
BEGIN
    -- Each leg's account, read without a lock (ids never change). One missing that may be credited
    -- (a user's credit, any system account) is created here: ON CONFLICT DO NOTHING, after which a
    -- concurrent creation of the same account has committed and is read back. Creation follows the
    -- legs' order, the same in every transaction, so first uses of new accounts never wait on each
    -- other in a cycle. A user's account that would be debited is never created: there is nothing
    -- in it to spend (its balance counts as 0 below).
    FOR i IN 1 .. legs LOOP
        FOR attempt IN 1 .. 2 LOOP
            IF p_owner_types[i] = 'user' THEN
                SELECT id INTO found_id FROM ledger_accounts
                WHERE owner_type = 'user' AND user_id = p_user_ids[i] AND currency = p_currencies[i]
                    AND kind = p_kinds[i];
            ELSE
                SELECT id INTO found_id FROM ledger_accounts
                WHERE owner_type = 'system' AND kind = p_kinds[i] AND currency = p_currencies[i];
            END IF;
            EXIT WHEN found_id IS NOT NULL OR (p_owner_types[i] = 'user' AND p_amounts[i] < 0);
            IF attempt = 2 THEN
                RAISE EXCEPTION 'ledger account % % % % conflicted on creation but cannot be read back',
                    p_owner_types[i], p_user_ids[i], p_kinds[i], p_currencies[i];
            END IF;
            INSERT INTO ledger_accounts (id, currency, owner_type, user_id, kind, balance)
            VALUES (gen_random_uuid(), p_currencies[i], p_owner_types[i], p_user_ids[i], p_kinds[i], 0)
            ON CONFLICT DO NOTHING
            RETURNING id INTO found_id;
            IF found_id IS NOT NULL THEN
                created := array_append(created, found_id);
                EXIT;
            END IF;
        END LOOP;
        account_ids[i] := found_id;
    END LOOP;

    -- Row locks in id order, the one lock order of every ledger transaction (no deadlock between
    -- transfers). Ids never change, so looking them up unlocked first is safe. A fresh snapshot:
    -- the balances read are the latest committed.
    FOR locked IN
        SELECT id, balance FROM ledger_accounts WHERE id = ANY(account_ids) ORDER BY id FOR UPDATE
    LOOP
        balances[array_position(account_ids, locked.id)] := locked.balance;
    END LOOP;

    -- No user balance below zero: refused before anything is written.
    FOR i IN 1 .. legs LOOP
        IF p_owner_types[i] = 'user' AND p_amounts[i] < 0 AND coalesce(balances[i], 0) + p_amounts[i] < 0 THEN
            -- A refusal leaves nothing behind, not even an empty account.
            IF cardinality(created) > 0 THEN
                DELETE FROM ledger_accounts WHERE id = ANY(created);
            END IF;
            outcome := 'insufficient';
            short_leg := i;
            short_balance := coalesce(balances[i], 0);
            RETURN;
        END IF;
    END LOOP;

    -- A reference posts once: a concurrent insert of the same one waits here, then does nothing.
    INSERT INTO ledger_transfers (id, reference, type, reference_kind, reference_id, tx_hash, hold_id, created_at)
    VALUES (p_transfer_id, p_reference, p_type, p_reference_kind, p_reference_id, p_tx_hash, p_hold_id,
            clock_timestamp())
    ON CONFLICT (reference) DO NOTHING
    RETURNING created_at INTO posted_at;
    IF posted_at IS NULL THEN
        outcome := 'exists';
        RETURN;
    END IF;

    INSERT INTO ledger_postings (id, transfer_id, account_id, currency, amount, created_at)
    SELECT gen_random_uuid(), p_transfer_id, leg.account_id, leg.currency, leg.amount, posted_at
    FROM unnest(account_ids, p_currencies, p_amounts) AS leg(account_id, currency, amount);

    FOR i IN 1 .. legs LOOP
        UPDATE ledger_accounts SET balance = balance + p_amounts[i] WHERE id = account_ids[i];
    END LOOP;

    IF p_hold_action = 'create' THEN
        INSERT INTO ledger_holds (id, user_id, currency, amount, state, created_at)
        VALUES (p_transfer_id, p_hold_user_id, p_hold_currency, p_hold_amount, 'pending', posted_at);
    ELSIF p_hold_action = 'resolve' THEN
        UPDATE ledger_holds SET state = p_hold_state, posted_amount = p_posted_amount, fee = p_fee,
            resolved_at = posted_at
        WHERE id = p_hold_id AND state = 'pending';
    END IF;
    outcome := 'posted';
END $$
"""

# A hold's settlement: the hold's row is locked first (so a post and a void of one hold
# serialize), its legs follow from the hold (custody.ledger.service.post_hold and void_hold say
# what they are), and ledger_post() writes them. What the caller can check without the hold it has
# checked already (amounts are ints in range, the fee account is a system account, the
# destination is not a held account).
LEDGER_RESOLVE_HOLD = """
CREATE FUNCTION ledger_resolve_hold(
    p_hold_id uuid, p_transfer_id uuid, p_state varchar,  -- 'posted' | 'voided'
    p_type varchar, p_reference varchar, p_reference_kind varchar, p_reference_id varchar, p_tx_hash varchar,
    -- 'posted' only: the destination, the amount (NULL: all but the fee), the fee and its system account.
    p_destination_owner_type varchar, p_destination_user_id uuid, p_destination_kind varchar,
    p_amount numeric, p_fee numeric, p_fee_kind varchar,
    -- 'posted'; 'not_found'; 'already_resolved'; 'invalid_amount' (all but the fee is not > 0);
    -- 'exceeds_hold'; 'own_account' (the destination is the hold's owner: that is a void);
    -- 'insufficient' (short_balance: the held balance); 'exists' (the reference had posted:
    -- existing_transfer_id). Nothing is written unless 'posted'.
    OUT outcome varchar, OUT posted_at timestamptz, OUT short_balance numeric, OUT existing_transfer_id uuid,
    OUT hold_reference varchar, OUT hold_user_id uuid, OUT hold_currency varchar, OUT hold_amount numeric,
    OUT hold_state varchar, OUT hold_created_at timestamptz, OUT hold_posted_amount numeric
) LANGUAGE plpgsql AS $$
DECLARE
    hold_kind varchar;
    hold_object varchar;
    settled_reference varchar;
    rest numeric;
    owner_types varchar[];
    user_ids uuid[];
    kinds varchar[];
    amounts numeric[];
    written record;
BEGIN
    SELECT t.reference, h.user_id, h.currency, h.amount, h.state, h.created_at, t.reference_kind, t.reference_id
    INTO hold_reference, hold_user_id, hold_currency, hold_amount, hold_state, hold_created_at, hold_kind,
        hold_object
    FROM ledger_holds AS h JOIN ledger_transfers AS t ON t.id = h.id
    WHERE h.id = p_hold_id
    FOR UPDATE OF h;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;
    IF hold_state <> 'pending' THEN
        outcome := 'already_resolved';
        RETURN;
    END IF;

    IF p_state = 'voided' THEN
        owner_types := ARRAY['user', 'user'];
        user_ids := ARRAY[hold_user_id, hold_user_id];
        kinds := ARRAY['held', 'available'];
        amounts := ARRAY[-hold_amount, hold_amount];
    ELSE
        hold_posted_amount := coalesce(p_amount, hold_amount - p_fee);
        IF hold_posted_amount <= 0 THEN
            outcome := 'invalid_amount';
            RETURN;
        END IF;
        IF hold_posted_amount + p_fee > hold_amount THEN
            outcome := 'exceeds_hold';
            RETURN;
        END IF;
        IF p_destination_owner_type = 'user' AND p_destination_user_id = hold_user_id THEN
            outcome := 'own_account';
            RETURN;
        END IF;
        owner_types := ARRAY['user', p_destination_owner_type];
        user_ids := ARRAY[hold_user_id, p_destination_user_id];
        kinds := ARRAY['held', p_destination_kind];
        amounts := ARRAY[-hold_amount, hold_posted_amount];
        IF p_fee > 0 THEN
            IF p_destination_owner_type = 'system' AND p_destination_kind = p_fee_kind THEN
                amounts[2] := amounts[2] + p_fee;  -- one account, one netted leg
            ELSE
                owner_types := array_append(owner_types, 'system');
                user_ids := array_append(user_ids, NULL::uuid);
                kinds := array_append(kinds, p_fee_kind);
                amounts := array_append(amounts, p_fee);
            END IF;
        END IF;
        rest := hold_amount - hold_posted_amount - p_fee;
        IF rest > 0 THEN
            owner_types := array_append(owner_types, 'user');
            user_ids := array_append(user_ids, hold_user_id);
            kinds := array_append(kinds, 'available');
            amounts := array_append(amounts, rest);
        END IF;
    END IF;
    -- The service's order of account keys (kind, then user id, by code point as Python compares
    -- strings; custody.ledger.service._ordered): every creator of missing accounts agrees on it.
    SELECT array_agg(leg.owner_type ORDER BY leg.kind COLLATE "C", coalesce(leg.user_id::text, '') COLLATE "C"),
        array_agg(leg.user_id ORDER BY leg.kind COLLATE "C", coalesce(leg.user_id::text, '') COLLATE "C"),
        array_agg(leg.kind ORDER BY leg.kind COLLATE "C", coalesce(leg.user_id::text, '') COLLATE "C"),
        array_agg(leg.amount ORDER BY leg.kind COLLATE "C", coalesce(leg.user_id::text, '') COLLATE "C")
    INTO owner_types, user_ids, kinds, amounts
    FROM unnest(owner_types, user_ids, kinds, amounts) AS leg(owner_type, user_id, kind, amount);

    settled_reference := coalesce(p_reference,
                                  hold_reference || ':' || CASE WHEN p_state = 'posted' THEN 'post' ELSE 'void' END);
    SELECT * INTO written FROM ledger_post(
        p_transfer_id, settled_reference, p_type, coalesce(p_reference_kind, hold_kind),
        coalesce(p_reference_id, hold_object), p_tx_hash, p_hold_id, owner_types, user_ids, kinds,
        array_fill(hold_currency, ARRAY[cardinality(amounts)]), amounts, 'resolve', NULL, NULL, NULL, p_state,
        hold_posted_amount, CASE WHEN p_state = 'posted' THEN p_fee END);
    outcome := written.outcome;
    posted_at := written.posted_at;
    short_balance := written.short_balance;
    IF outcome = 'exists' THEN
        SELECT t.id INTO existing_transfer_id FROM ledger_transfers AS t WHERE t.reference = settled_reference;
    ELSIF outcome = 'posted' THEN
        hold_state := p_state;
    END IF;
END $$
"""


# The event's hash is SHA-256 of its canonical JSON followed by prev_hash (core.audit.event_hash).
# The caller sends the canonical JSON cut around the value of "seq" (p_head, p_tail: the bytes
# before and after it), the one field only known under the lock.
AUDIT_APPEND = """
CREATE FUNCTION audit_append(
    p_aggregate_type varchar, p_aggregate_id varchar, p_type varchar, p_data jsonb, p_actor varchar,
    p_occurred_at timestamptz, p_genesis varchar, p_head bytea, p_tail bytea
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    last_seq integer;
    last_hash varchar;
BEGIN
    -- The same lock as core.db.advisory_lock(f"{aggregate_type}:{aggregate_id}"): the aggregate's
    -- appends are serialized, and the next statement's fresh snapshot sees the last one committed.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_aggregate_type || ':' || p_aggregate_id, 0));
    SELECT seq, hash INTO last_seq, last_hash FROM audit_events
    WHERE aggregate_type = p_aggregate_type AND aggregate_id = p_aggregate_id
    ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        last_hash := p_genesis;
    END IF;
    INSERT INTO audit_events (aggregate_type, aggregate_id, seq, type, data, actor, occurred_at, prev_hash, hash)
    VALUES (p_aggregate_type, p_aggregate_id, last_seq + 1, p_type, p_data, p_actor, p_occurred_at, last_hash,
            encode(sha256(p_head || convert_to((last_seq + 1)::text, 'UTF8') || p_tail
                          || convert_to(last_hash, 'UTF8')), 'hex'));
    RETURN last_seq + 1;
END $$
"""


def upgrade() -> None:
    op.execute(LEDGER_POST)
    op.execute(LEDGER_RESOLVE_HOLD)
    op.execute(AUDIT_APPEND)


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_append(varchar, varchar, varchar, jsonb, varchar, timestamptz, varchar, bytea,"
               " bytea)")
    op.execute("DROP FUNCTION ledger_resolve_hold(uuid, uuid, varchar, varchar, varchar, varchar, varchar, varchar,"
               " varchar, uuid, varchar, numeric, numeric, varchar)")
    op.execute("DROP FUNCTION ledger_post(uuid, varchar, varchar, varchar, varchar, varchar, uuid, varchar[], uuid[],"
               " varchar[], varchar[], numeric[], varchar, uuid, varchar, numeric, varchar, numeric, numeric)")
