"""audit_append(): a transaction's events of one chain appended, hashed and the head moved
in one call, in the database, while it holds the head (PostgreSQL only)

Revision ID: 5e0a3c8b2d17
Revises: 7c1f0e2d9a41
Create Date: 2026-12-03 13:00:00+00:00

The hash follows the chain rule of app.domain.audit, unchanged: the service sends each
event's canonical JSON cut around occurred_at, prev_hash and seq (CanonicalParts), and the
function fills them in from the head it has locked. The events' time is the database's
clock once the head is locked, so times never go backwards along a chain.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5e0a3c8b2d17"
down_revision: str | None = "7c1f0e2d9a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE FUNCTION audit_append(
    p_chain text, p_actor_id text, p_actor_role text, p_request_id text,
    p_action text[], p_entity_type text[], p_entity_id text[], p_subject_id text[],
    p_reason text[], p_before text[], p_after text[],
    p_before_time text[], p_before_seq text[], p_rest text[]
) RETURNS void AS $$
DECLARE
    head_seq integer;
    head_hash text;
    at timestamptz;
    at_text text;
    new_hash text;
BEGIN
    SELECT seq, hash INTO head_seq, head_hash
        FROM audit_chain_head WHERE chain = p_chain FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain_head (chain, seq, hash, updated_at)
            VALUES (p_chain, 0, repeat('0', 64), clock_timestamp())
            ON CONFLICT (chain) DO NOTHING;
        SELECT seq, hash INTO head_seq, head_hash
            FROM audit_chain_head WHERE chain = p_chain FOR UPDATE;
    END IF;
    at := clock_timestamp();
    at_text := to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00';
    FOR i IN 1 .. cardinality(p_action) LOOP
        head_seq := head_seq + 1;
        new_hash := encode(sha256(convert_to(
            p_before_time[i] || at_text || '","prev_hash":"' || head_hash
                || p_before_seq[i] || head_seq::text || p_rest[i],
            'UTF8')), 'hex');
        INSERT INTO audit_event (
            chain, seq, occurred_at, actor_id, actor_role, action, entity_type, entity_id,
            subject_id, reason, before, after, request_id, prev_hash, hash
        ) VALUES (
            p_chain, head_seq, at, p_actor_id, p_actor_role, p_action[i], p_entity_type[i],
            p_entity_id[i], p_subject_id[i], p_reason[i], p_before[i]::jsonb,
            p_after[i]::jsonb, p_request_id, head_hash, new_hash
        );
        head_hash := new_hash;
    END LOOP;
    UPDATE audit_chain_head SET seq = head_seq, hash = head_hash, updated_at = at
        WHERE chain = p_chain;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS audit_append(text, text, text, text, text[], text[], "
            "text[], text[], text[], text[], text[], text[], text[], text[])"
        )
