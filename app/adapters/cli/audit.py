"""`iwrs audit`: check the audit trail's hash chains."""

from __future__ import annotations

import typer

from app.adapters.cli.common import container, out

app = typer.Typer(help="The tamper-evident audit trail.")


@app.command("verify")
def verify() -> None:
    """Recompute every chain; exit 1 naming the first bad event of each broken chain."""
    from app.adapters.cli.common import err
    from app.adapters.db.audit import chain_head, chains, iter_chain
    from app.domain.audit import verify_chain

    broken = 0
    with container() as c, c.session_factory() as session:
        for chain in chains(session):
            head = chain_head(session, chain)
            problem = verify_chain(chain, iter_chain(session, chain), head)
            if problem is None:
                out.print(f"ok      {chain}: {head[0] if head else 0} events")
            else:
                broken += 1
                err.print(f"BROKEN  {problem}", highlight=False, markup=False)
    if broken:
        raise typer.Exit(1)
    out.print("the audit trail is intact")
