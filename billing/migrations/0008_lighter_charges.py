"""Lighter charges: holds stop caching a balance, fewer indexes, lighter PostgreSQL functions.

Why (issue #8, item 6: charges/s with many users at once). Measured per charge before
this migration: two commits, ~0.75 ms of PostgreSQL CPU, ~4.4 kB of WAL, 19 index
insertions for a reservation and 11 for a settlement, and every settlement locked and
updated its user's holds row, so a busy user's settlements queued behind their
reservations, each holding that row through its commit's disk flush.

- A user's holds account caches no balance any more (NULL, like the system accounts;
  ``billing.models``): its balance is the sum of its entries. A reservation locks and
  updates the wallet only; a post locks no account at all (the charge's own row lock
  makes it once per charge); a void locks the wallet it credits.
- Indexes no query uses go: the charge's user (the (user, created_at) index serves it),
  card, route and price version indexes; the NULLs of ``created_by`` (partial index now);
  on PostgreSQL the ``varchar_pattern_ops`` copy of the idempotency key's unique index
  (keys are only ever looked up by equality).
- ``vitrine_charge_reserve`` and ``vitrine_charge_settle`` (CREATE OR REPLACE, same
  signatures and outcomes as 0006) follow: the wallet alone is locked, and a settlement
  no longer looks the ledger key up (under the charge's row lock a still-reserved charge
  has no settlement yet; the key's unique index still guards).
"""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

v1 = importlib.import_module("billing.migrations.0006_charge_functions_pg")
CHARGE_OUT, CHARGE_COLUMNS, CHARGE_INTO = v1.CHARGE_OUT, v1.CHARGE_COLUMNS, v1.CHARGE_INTO

# The INSERT of a new charge, shared by the paid and the free branch.
INSERT_CHARGE = """
            INSERT INTO billing_charge
                   (id, job_id, user_id, api_key_id, card_id, route_id, price_version_id,
                    unit_price, units, amount, would_be_amount, byok, status, created_at,
                    settled_at)
            VALUES (gen_random_uuid(), p_job_id, p_user_id, p_api_key_id, p_card_id,
                    p_route_id, v_version_id, v_price, p_units, v_amount, v_would_be, v_byok,
                    'reserved', clock_timestamp(), NULL)"""

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
    v_wallet_id bigint;
    v_wallet_balance numeric;
    v_holds_id bigint;
    v_txn_id uuid;
    v_now timestamptz := clock_timestamp();
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
                -- the cap. Own row, so before the wallet.
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
            -- The user's wallet, locked: the only account row a reservation locks (the
            -- holds account caches no balance and only gets an entry, so it is not).
            SELECT w.id, w.balance,
                   (SELECT h.id FROM billing_ledgeraccount h
                     WHERE h.user_id = p_user_id AND h.kind = 'holds')
              INTO v_wallet_id, v_wallet_balance, v_holds_id
              FROM billing_ledgeraccount w
             WHERE w.user_id = p_user_id AND w.kind = 'wallet'
               FOR NO KEY UPDATE OF w;
            IF v_wallet_id IS NULL OR v_holds_id IS NULL THEN
                outcome := 'fallback';  -- first charge of this user: Python creates them
                EXIT work;
            END IF;
            -- Looked up once we hold the lock: a concurrent reservation of this job
            -- committed its hold and its charge before we got it; that charge is the one.
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
            VALUES (v_txn_id, 'reserve', p_idempotency_key, p_memo, NULL, NULL, v_now);
            INSERT INTO billing_ledgerentry (transaction_id, account_id, amount, created_at)
            VALUES (v_txn_id, v_wallet_id, -v_amount, v_now),
                   (v_txn_id, v_holds_id, v_amount, v_now);
            -- Relative, never a stale absolute value; the wallet's CHECK refuses < 0.
            UPDATE billing_ledgeraccount SET balance = round(balance - v_amount, 10)
             WHERE id = v_wallet_id;
            -- We hold the wallet's lock: another reservation of this job waits for it and
            -- then answers 'existing' above, so this insert needs no conflict handling.
            {INSERT_CHARGE}
            RETURNING {CHARGE_COLUMNS} INTO {CHARGE_INTO};
            outcome := 'created';
        ELSE
            -- Free (BYOK): no lock and no money. Reserved at the same moment on another
            -- connection: that connection's charge is the one.
            {INSERT_CHARGE}
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
    v_other_kind text;
    v_holds_id bigint;
    v_other_id bigint;
    v_txn_id uuid;
    v_now timestamptz := clock_timestamp();
BEGIN
    <<work>>
    BEGIN
        -- Lock the charge row only (OF c): locking the joined route too would make every
        -- settlement wait for, and deadlock with, reservations that insert charges on it.
        -- This lock makes a settlement happen once: a second one waits, then sees the
        -- new status.
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
            -- From the user's holds to revenue (or the provider's payable) when posted,
            -- back to the wallet when voided.
            v_other_kind := CASE WHEN p_to <> 'posted' THEN 'wallet'
                                 WHEN v_is_own THEN 'inference_revenue'
                                 ELSE 'provider_payable' END;
            SELECT (SELECT id FROM billing_ledgeraccount
                     WHERE user_id = v_user_id AND kind = 'holds'),
                   CASE WHEN v_other_kind = 'wallet'
                        THEN (SELECT id FROM billing_ledgeraccount
                               WHERE user_id = v_user_id AND kind = 'wallet')
                        ELSE (SELECT id FROM billing_ledgeraccount
                               WHERE user_id IS NULL AND kind = v_other_kind) END
              INTO v_holds_id, v_other_id;
            IF v_holds_id IS NULL OR v_other_id IS NULL THEN
                outcome := 'fallback';  -- an account not created yet: Python creates it
                EXIT work;
            END IF;
            -- No account is locked for a post: the holds and the revenue (or payable)
            -- account cache no balance and only get an INSERT. A void's UPDATE locks the
            -- wallet it credits (after the charge: the one lock order).
            v_txn_id := gen_random_uuid();
            INSERT INTO billing_ledgertransaction
                   (id, kind, idempotency_key, memo, created_by_id, reverses_id, created_at)
            VALUES (v_txn_id, p_kind, p_idempotency_key, p_memo, NULL, NULL, v_now);
            INSERT INTO billing_ledgerentry (transaction_id, account_id, amount, created_at)
            VALUES (v_txn_id, v_holds_id, -v_amount, v_now),
                   (v_txn_id, v_other_id, v_amount, v_now);
            IF v_other_kind = 'wallet' THEN
                UPDATE billing_ledgeraccount SET balance = round(balance + v_amount, 10)
                 WHERE id = v_other_id;
            END IF;
        END IF;
        UPDATE billing_charge SET status = p_to, settled_at = v_now
         WHERE id = v_id
        RETURNING {CHARGE_COLUMNS} INTO {CHARGE_INTO};
        outcome := 'settled';
    END work;
END
$fn$;
"""

LIKE_INDEX = "billing_ledgertransaction_idempotency_key_c013d20a_like"


def holds_stop_caching(apps, schema_editor):
    LedgerAccount = apps.get_model("billing", "LedgerAccount")
    # The cache equalled the sum of the entries (the bench and the tests check it): from
    # now on that sum is the balance.
    LedgerAccount.objects.filter(kind="holds").update(balance=None)


def holds_cache_again(apps, schema_editor):
    from decimal import Decimal

    LedgerAccount = apps.get_model("billing", "LedgerAccount")
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    for account in LedgerAccount.objects.filter(kind="holds", user__isnull=False):
        amounts = LedgerEntry.objects.filter(account=account).values_list("amount", flat=True)
        account.balance = sum(amounts, Decimal(0))
        account.save(update_fields=["balance"])


def install_pg(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite keeps the ORM path and has no pattern-ops index
    schema_editor.execute(f"DROP INDEX IF EXISTS {LIKE_INDEX}", params=None)
    # params=None: the bodies hold a literal % (RAISE's format), not a placeholder.
    schema_editor.execute(RESERVE, params=None)
    schema_editor.execute(SETTLE, params=None)


def uninstall_pg(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX}"
        " ON billing_ledgertransaction (idempotency_key varchar_pattern_ops)",
        params=None,
    )
    schema_editor.execute(v1.RESERVE, params=None)
    schema_editor.execute(v1.SETTLE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_webhook_secret"),
        ("catalog", "0004_evaluation_result"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='ledgeraccount',
            name='holds_never_negative',
        ),
        migrations.RemoveConstraint(
            model_name='ledgeraccount',
            name='balance_cached_for_user_accounts',
        ),
        migrations.RunPython(holds_stop_caching, holds_cache_again),
        migrations.AddConstraint(
            model_name='ledgeraccount',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('balance__isnull', False), ('kind', 'wallet')), models.Q(models.Q(('kind', 'wallet'), _negated=True), ('balance__isnull', True)), _connector='OR'), name='balance_cached_for_wallets'),
        ),
        migrations.AlterField(
            model_name='charge',
            name='card',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.modelcard'),
        ),
        migrations.AlterField(
            model_name='charge',
            name='price_version',
            field=models.ForeignKey(db_index=False, help_text='The price in force when the job was accepted.', on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.pricechange'),
        ),
        migrations.AlterField(
            model_name='charge',
            name='route',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.priceroute'),
        ),
        migrations.AlterField(
            model_name='charge',
            name='user',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='charges', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='ledgertransaction',
            name='created_by',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='ledgertransaction',
            index=models.Index(condition=models.Q(('created_by__isnull', False)), fields=['created_by'], name='ledgertxn_created_by_set'),
        ),
        migrations.RunPython(install_pg, uninstall_pg),
    ]
