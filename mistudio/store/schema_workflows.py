"""Extract-then-train chains get a table of their own (they were rows of ``template_state``,
the training form's key/value table, under ``workflow:<id>``)."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(62, "workflow_chains: extract-then-train chains out of template_state")
def _v62(db):
    db["workflow_chains"].create({"id": str, "value": str, "updated_at": str}, pk="id")
    db.execute("INSERT INTO workflow_chains (id, value, updated_at) "
               "SELECT substr(key, length('workflow:') + 1), value, updated_at "
               "FROM template_state WHERE key LIKE 'workflow:%'")
    db.execute("DELETE FROM template_state WHERE key LIKE 'workflow:%'")
