"""Site resupply: the initial shipment and the blind-safe trigger/resupply rule.

Stock of a kit type at a site = its dispensable kits there + its kits in transit to it.

Rule: when the stock of ANY kit type falls below its trigger level, the site's depot ships
EVERY kit type of the study: max(1, resupply - stock) kits of each type. Otherwise nothing.

Why every type: a shipment of only the type that ran short, right after a visit, tells the
site which type that subject got, and since all kits of a one-type shipment share a type,
it links every subject later dispensed from it (Yu and Coleman, 2015). Restoring every type
at once makes a shipment look the same whichever type was consumed.

Why at least one kit of each type, rather than max(0, resupply - stock): a type sitting
exactly at its resupply level would otherwise be left out, and whether it is left out depends
on which type the last subject consumed (two sites that differ only by one kit of X taken
instead of one of Y would get shipments with different sets of types). With the floor, every
triggered shipment carries every type, at the price of at most one kit above the resupply
level for a type that was already there.

Tested property: whenever a shipment is triggered, the set of types it carries is all the
types of `levels`; hence two sites whose stocks differ only by one kit of X versus one kit of
Y get the same set of types whenever both trigger. Whether a site triggers at all can still
differ (one type crosses its trigger and the other does not): that is inherent to per-type
trigger levels, and the shipment it produces does not say which type crossed.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.domain.study import SupplyLevels


def initial_shipment(levels: Mapping[str, SupplyLevels]) -> dict[str, int]:
    """What a site receives on activation: the initial quantity of every kit type."""
    return {
        kit_type: levels[kit_type].initial
        for kit_type in sorted(levels)
        if levels[kit_type].initial > 0
    }


def resupply_needs(
    levels: Mapping[str, SupplyLevels],
    available_by_type: Mapping[str, int],
    in_transit_by_type: Mapping[str, int],
) -> dict[str, int]:
    """The kits to ship by type (empty when no type is below its trigger level)."""
    if any(n < 0 for n in (*available_by_type.values(), *in_transit_by_type.values())):
        raise ValueError("kit counts cannot be negative")
    stock = {
        kit_type: available_by_type.get(kit_type, 0) + in_transit_by_type.get(kit_type, 0)
        for kit_type in levels
    }
    if not any(stock[kit_type] < level.trigger for kit_type, level in levels.items()):
        return {}
    return {
        kit_type: max(1, levels[kit_type].resupply - stock[kit_type]) for kit_type in sorted(levels)
    }
