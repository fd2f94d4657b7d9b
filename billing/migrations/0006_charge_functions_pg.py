"""PostgreSQL functions that reserve and settle a charge in one round trip each.

``billing.services.charges`` calls them on PostgreSQL; SQLite (the single-user embedded
default) keeps the ORM path, and this migration does nothing there. Both paths have the
same semantics (tests/billing/test_charge_paths_pg.py runs the same scenarios through both
and compares the ledgers). Why: the ORM path costs ~21 statements per charge (reserve +
post), each a round trip and a parse/plan on the server, and on two cores that Python and
server CPU, not locking, capped charges/s. The functions' statements are planned once per
connection and run next to the data.

The locks are the ORM path's, taken in the same order: the caller's own rows first (the
charge, the API key), then the user's cached accounts in primary-key order, FOR NO KEY
UPDATE (it does not conflict with the KEY SHARE that inserting a row referencing them
takes). System accounts are only INSERTed into, never locked or updated (the hot-row
problem; see ``billing.services.ledger``).

A refusal (402, 403, 409) is a returned ``outcome``, never a raised error, so a caller's
outer transaction stays usable, as with the ORM path; the function has then written
nothing. ``fallback`` means a rare case the function leaves to the ORM path (an account
not created yet): it has written nothing either.

To change a function later: a new migration with CREATE OR REPLACE (this one stays as it
shipped).
"""

from django.db import migrations

# Charge's columns in model order: billing.services.charges.CHARGE_FIELDS reads them back.
CHARGE_OUT = """
    OUT outcome text,
    OUT detail1 numeric,
    OUT detail2 numeric,
    OUT c_id uuid,
    OUT c_job_id uuid,
    OUT c_user_id integer,
    OUT c_api_key_id bigint,
    OUT c_card_id bigint,
    OUT c_route_id bigint,
    OUT c_price_version_id bigint,
    OUT c_unit_price numeric,
    OUT c_units integer,
    OUT c_amount numeric,
    OUT c_would_be_amount numeric,
    OUT c_byok boolean,
    OUT c_status varchar,
    OUT c_created_at timestamptz,
    OUT c_settled_at timestamptz
"""

# Read a charge into the OUT parameters: SELECT {CHARGE_COLUMNS} INTO {CHARGE_INTO} ...,
# or INSERT/UPDATE ... RETURNING {CHARGE_COLUMNS} INTO {CHARGE_INTO}.
CHARGE_COLUMNS = """id, job_id, user_id, api_key_id, card_id, route_id, price_version_id,
                   unit_price, units, amount, would_be_amount, byok, status, created_at,
                   settled_at"""
CHARGE_INTO = """c_id, c_job_id, c_user_id, c_api_key_id, c_card_id, c_route_id,
                   c_price_version_id, c_unit_price, c_units, c_amount, c_would_be_amount,
                   c_byok, c_status, c_created_at, c_settled_at"""

RESERVE = f"""
CREATE OR REPLACE FUNCTION vitrine_charge_reserve(
    p_job_id uuid,
    p_user_id integer,
    p_card_id bigint,
    p_route_id bigint,
    p_byok_available boolean,
    p_route_slug text,
    p_api_key_id bigint,
    p_spend_cap numeric,
    p_month_start timestamptz,
    p_units integer,
    p_idempotency_key text,
    p_memo text,
    {CHARGE_OUT}
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_version_id bigint;
    v_price numeric;
    v_byok boolean := false;
    v_would_be numeric;
    v_amount numeric;
    v_spent numeric;
    v_account record;
    v_wallet_id bigint;
    v_wallet_balance numeric;
    v_holds_id bigint;
    v_txn_id uuid;
BEGIN
    <<work>>
    BEGIN
        -- Idempotent by job: a retried request gets the charge it already has.
        SELECT {CHARGE_COLUMNS} INTO {CHARGE_INTO} FROM billing_charge WHERE job_id = p_job_id;
        IF FOUND THEN
            outcome := 'existing';
            EXIT work;
        END IF;
        -- The price in force now, recorded on the charge: a later change never reprices it.
        SELECT id, price INTO v_version_id, v_price
          FROM catalog_pricechange WHERE route_id = p_route_id
         ORDER BY effective_at DESC, id DESC LIMIT 1;
        IF NOT FOUND THEN
            outcome := 'no_price';
            EXIT work;
        END IF;
        IF p_byok_available THEN
            v_byok := EXISTS (
                SELECT 1 FROM billing_providerkey
                 WHERE user_id = p_user_id AND provider = p_route_slug);
        END IF;
        -- catalog.pricing.image_cost: half up to 1e-10 USD (round() on a positive numeric).
        v_would_be := round(v_price * p_units, 10);
        v_amount := CASE WHEN v_byok THEN 0 ELSE v_would_be END;
        IF p_api_key_id IS NOT NULL THEN
            IF EXISTS (SELECT 1 FROM billing_apikey_allowed_models WHERE apikey_id = p_api_key_id)
               AND NOT EXISTS (
                   SELECT 1 FROM billing_apikey_allowed_models
                    WHERE apikey_id = p_api_key_id AND modelcard_id = p_card_id) THEN
                outcome := 'model_not_allowed';
                EXIT work;
            END IF;
            IF p_spend_cap IS NOT NULL THEN
                -- The key is locked for the rest of the transaction: concurrent calls on
                -- one key sum the month's charges one after another and cannot overshoot
                -- the cap. Own row, so before the accounts.
                PERFORM 1 FROM billing_apikey WHERE id = p_api_key_id FOR NO KEY UPDATE;
                SELECT coalesce(sum(amount), 0) INTO v_spent FROM billing_charge
                 WHERE api_key_id = p_api_key_id AND created_at >= p_month_start
                   AND status IN ('reserved', 'posted');
                IF v_spent + v_amount > p_spend_cap THEN
                    outcome := 'spend_cap_reached';
                    detail1 := v_spent;
                    detail2 := v_amount;
                    EXIT work;
                END IF;
            END IF;
        END IF;
        IF v_amount > 0 THEN
            -- The user's wallet and holds, locked in pk order (rows are locked as they
            -- leave the sort): the one lock order, so concurrent charges cannot deadlock.
            FOR v_account IN
                SELECT id, kind, balance FROM billing_ledgeraccount
                 WHERE user_id = p_user_id AND kind IN ('wallet', 'holds')
                 ORDER BY id FOR NO KEY UPDATE
            LOOP
                IF v_account.kind = 'wallet' THEN
                    v_wallet_id := v_account.id;
                    v_wallet_balance := v_account.balance;
                ELSE
                    v_holds_id := v_account.id;
                END IF;
            END LOOP;
            IF v_wallet_id IS NULL OR v_holds_id IS NULL THEN
                outcome := 'fallback';  -- first charge of this user: Python creates them
                EXIT work;
            END IF;
            -- Looked up once we hold the locks: a concurrent reservation of this job
            -- committed its hold and its charge before we got them; that charge is the one.
            PERFORM 1 FROM billing_ledgertransaction WHERE idempotency_key = p_idempotency_key;
            IF FOUND THEN
                SELECT {CHARGE_COLUMNS} INTO {CHARGE_INTO}
                  FROM billing_charge WHERE job_id = p_job_id;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'the charge of job % is missing', p_job_id;
                END IF;
                outcome := 'existing';
                EXIT work;
            END IF;
            IF v_wallet_balance - v_amount < 0 THEN
                outcome := 'insufficient';
                detail1 := v_wallet_balance;
                detail2 := v_amount;
                EXIT work;
            END IF;
            v_txn_id := gen_random_uuid();
            INSERT INTO billing_ledgertransaction
                   (id, kind, idempotency_key, memo, created_by_id, reverses_id, created_at)
            VALUES (v_txn_id, 'reserve', p_idempotency_key, p_memo, NULL, NULL, clock_timestamp());
            INSERT INTO billing_ledgerentry (transaction_id, account_id, amount, created_at)
            VALUES (v_txn_id, v_wallet_id, -v_amount, clock_timestamp()),
                   (v_txn_id, v_holds_id, v_amount, clock_timestamp());
            -- Relative, never a stale absolute value; the wallet's CHECK refuses < 0.
            UPDATE billing_ledgeraccount
               SET balance = round(balance + CASE WHEN id = v_wallet_id
                                                  THEN -v_amount ELSE v_amount END, 10)
             WHERE id IN (v_wallet_id, v_holds_id);
            -- We hold the wallet's lock: another reservation of this job waits for it and
            -- then answers 'existing' above, so this insert needs no conflict handling.
            INSERT INTO billing_charge
                   (id, job_id, user_id, api_key_id, card_id, route_id, price_version_id,
                    unit_price, units, amount, would_be_amount, byok, status, created_at,
                    settled_at)
            VALUES (gen_random_uuid(), p_job_id, p_user_id, p_api_key_id, p_card_id,
                    p_route_id, v_version_id, v_price, p_units, v_amount, v_would_be, v_byok,
                    'reserved', clock_timestamp(), NULL)
            RETURNING {CHARGE_COLUMNS} INTO {CHARGE_INTO};
            outcome := 'created';
        ELSE
            -- Free (BYOK): no lock and no money. Reserved at the same moment on another
            -- connection: that connection's charge is the one.
            INSERT INTO billing_charge
                   (id, job_id, user_id, api_key_id, card_id, route_id, price_version_id,
                    unit_price, units, amount, would_be_amount, byok, status, created_at,
                    settled_at)
            VALUES (gen_random_uuid(), p_job_id, p_user_id, p_api_key_id, p_card_id,
                    p_route_id, v_version_id, v_price, p_units, v_amount, v_would_be, v_byok,
                    'reserved', clock_timestamp(), NULL)
            ON CONFLICT (job_id) DO NOTHING
            RETURNING {CHARGE_COLUMNS} INTO {CHARGE_INTO};
            outcome := 'created';
            IF NOT FOUND THEN
                SELECT {CHARGE_COLUMNS} INTO {CHARGE_INTO}
                  FROM billing_charge WHERE job_id = p_job_id;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'the charge of job % is missing', p_job_id;
                END IF;
                outcome := 'existing';
            END IF;
        END IF;
    END work;
END
$fn$;
"""

SETTLE = f"""
CREATE OR REPLACE FUNCTION vitrine_charge_settle(
    p_job_id uuid,
    p_to text,
    p_kind text,
    p_idempotency_key text,
    p_memo text,
    {CHARGE_OUT}
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_id uuid;
    v_status text;
    v_amount numeric;
    v_user_id integer;
    v_is_own boolean;
    v_revenue_kind text;
    v_account record;
    v_wallet_id bigint;
    v_holds_id bigint;
    v_revenue_id bigint;
    v_other_id bigint;
    v_txn_id uuid;
BEGIN
    <<work>>
    BEGIN
        -- Lock the charge row only (OF c): locking the joined route too would make every
        -- settlement wait for, and deadlock with, reservations that insert charges on it.
        SELECT c.id, c.status, c.amount, c.user_id, r.is_own,
               c.id, c.job_id, c.user_id, c.api_key_id, c.card_id, c.route_id,
               c.price_version_id, c.unit_price, c.units, c.amount, c.would_be_amount,
               c.byok, c.status, c.created_at, c.settled_at
          INTO v_id, v_status, v_amount, v_user_id, v_is_own, {CHARGE_INTO}
          FROM billing_charge c JOIN catalog_priceroute r ON r.id = c.route_id
         WHERE c.job_id = p_job_id
         LIMIT 1 FOR NO KEY UPDATE OF c;
        IF NOT FOUND THEN
            outcome := 'none';  -- no charge (anonymous playground)
            EXIT work;
        END IF;
        IF v_status <> 'reserved' THEN
            outcome := 'unchanged';  -- already settled: idempotent
            EXIT work;
        END IF;
        IF v_amount > 0 THEN
            v_revenue_kind := CASE WHEN v_is_own THEN 'inference_revenue'
                                   ELSE 'provider_payable' END;
            FOR v_account IN
                SELECT id, kind FROM billing_ledgeraccount
                 WHERE user_id = v_user_id OR (user_id IS NULL AND kind = v_revenue_kind)
            LOOP
                IF v_account.kind = 'wallet' THEN
                    v_wallet_id := v_account.id;
                ELSIF v_account.kind = 'holds' THEN
                    v_holds_id := v_account.id;
                ELSE
                    v_revenue_id := v_account.id;
                END IF;
            END LOOP;
            IF v_wallet_id IS NULL OR v_holds_id IS NULL OR v_revenue_id IS NULL THEN
                outcome := 'fallback';  -- an account not created yet: Python creates it
                EXIT work;
            END IF;
            -- Only the user's cached accounts are locked, in pk order; the revenue (or
            -- payable) account is shared by every user and only gets an INSERT.
            IF p_to = 'posted' THEN
                v_other_id := v_revenue_id;
                PERFORM 1 FROM billing_ledgeraccount WHERE id = v_holds_id FOR NO KEY UPDATE;
            ELSE
                v_other_id := v_wallet_id;
                PERFORM 1 FROM billing_ledgeraccount WHERE id IN (v_holds_id, v_wallet_id)
                 ORDER BY id FOR NO KEY UPDATE;
            END IF;
            PERFORM 1 FROM billing_ledgertransaction WHERE idempotency_key = p_idempotency_key;
            IF NOT FOUND THEN
                v_txn_id := gen_random_uuid();
                INSERT INTO billing_ledgertransaction
                       (id, kind, idempotency_key, memo, created_by_id, reverses_id, created_at)
                VALUES (v_txn_id, p_kind, p_idempotency_key, p_memo, NULL, NULL,
                        clock_timestamp());
                INSERT INTO billing_ledgerentry (transaction_id, account_id, amount, created_at)
                VALUES (v_txn_id, v_holds_id, -v_amount, clock_timestamp()),
                       (v_txn_id, v_other_id, v_amount, clock_timestamp());
                UPDATE billing_ledgeraccount
                   SET balance = round(balance + CASE WHEN id = v_holds_id
                                                      THEN -v_amount ELSE v_amount END, 10)
                 WHERE id = v_holds_id OR (p_to <> 'posted' AND id = v_wallet_id);
            END IF;
        END IF;
        UPDATE billing_charge SET status = p_to, settled_at = clock_timestamp()
         WHERE id = v_id
        RETURNING {CHARGE_COLUMNS} INTO {CHARGE_INTO};
        outcome := 'settled';
    END work;
END
$fn$;
"""

DROP = """
DROP FUNCTION IF EXISTS vitrine_charge_reserve(
    uuid, integer, bigint, bigint, boolean, text, bigint, numeric, timestamptz, integer,
    text, text);
DROP FUNCTION IF EXISTS vitrine_charge_settle(uuid, text, text, text, text);
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps the ORM path
    # params=None: the bodies hold a literal % (RAISE's format), not a placeholder.
    schema_editor.execute(RESERVE, params=None)
    schema_editor.execute(SETTLE, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_signup_credit_claim"),
        ("catalog", "0003_model_rate_limit"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
