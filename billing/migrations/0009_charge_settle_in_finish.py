"""vitrine_charge_settle_in_finish: a settlement inside the statement that finishes its job.

A job's finish and its charge's settlement are one statement committed on its own on
PostgreSQL (``playground.services._finish``, through ``_finish_sql(settle=True)``: no BEGIN,
no second statement, no COMMIT of their own). ``vitrine_charge_settle`` leaves one case to
Python, having written nothing: an account not created yet (``fallback``). In that statement
the job's finish would then commit without its settlement, so this wrapper raises instead
(SQLSTATE ``VT001``): the whole statement is undone, and the caller finishes the job and
settles through the ORM in one transaction, as before. Every other outcome is
``vitrine_charge_settle``'s own.
"""

from django.db import migrations

SETTLE_IN_FINISH = """
CREATE OR REPLACE FUNCTION vitrine_charge_settle_in_finish(
    p_job_id uuid, p_to text, p_kind text, p_idempotency_key text, p_memo text
) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    v_outcome text;
BEGIN
    SELECT s.outcome INTO v_outcome
      FROM vitrine_charge_settle(p_job_id, p_to, p_kind, p_idempotency_key, p_memo) s;
    IF v_outcome = 'fallback' THEN
        RAISE EXCEPTION 'the settlement of job % needs an account created first', p_job_id
              USING ERRCODE = 'VT001';
    END IF;
    RETURN v_outcome;
END
$fn$;
"""


def install_pg(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # params=None: the body holds a literal % (RAISE's format), not a placeholder.
        schema_editor.execute(SETTLE_IN_FINISH, params=None)


def uninstall_pg(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS vitrine_charge_settle_in_finish(uuid, text, text, text, text)",
            params=None,
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_lighter_charges")]

    operations = [migrations.RunPython(install_pg, uninstall_pg, elidable=False)]
