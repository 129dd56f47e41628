"""Which daemon should lead which queue: about queues / daemons each, and stable.

Pure code, no I/O: every daemon computes the same answer from the same view (the live
members, who leads what now, what each may lead, the pins), so they agree without talking to
each other.

- A queue stays with the daemon that leads it while that daemon is alive and leads no more
  than its share, ceil(queues / daemons): queues move only to even out the load (a daemon
  that comes back after its queues were taken over gets some back only if the others hold
  more than their share), never merely because a daemon joined. A new queue goes to the
  daemon asked about it first, if that one is under its share.
- Otherwise each queue ranks the daemons by a hash of (queue, daemon) (rendezvous hashing)
  and goes to the first one under its share. A queue's ranking does not depend on which
  other daemons exist, so what moves when a daemon joins or leaves is only what must.
- A daemon over its share keeps the queues it ranks highest and lets the others go.
- A pin (``[queues.X] prefer = "daemon-a"``) gives the queue to that daemon while it is
  alive, whatever its load.
- A daemon with a ``lead`` list leads only the queues in it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping


def rank(queue: str, member: str) -> int:
    """The weight of ``member`` for ``queue`` (higher wins); the same in every process."""
    digest = hashlib.blake2b(f"{queue}\0{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def may_lead(member: str, queue: str, lead: Mapping[str, Iterable[str]]) -> bool:
    """True when ``member`` has no ``lead`` list or ``queue`` is in it."""
    allowed = list(lead.get(member) or ())
    return not allowed or queue in allowed


def assign(queues: Iterable[str], members: Iterable[str], *,
           holders: Mapping[str, str] | None = None,
           prefer: Mapping[str, str] | None = None,
           lead: Mapping[str, Iterable[str]] | None = None) -> dict[str, str]:
    """Return {queue: member} for the queues some member may lead (see the module).

    ``holders``: {queue: member} who leads (or was asked first about) each queue now;
    ``prefer``: {queue: member} pins (a pin to a member not in ``members`` is ignored);
    ``lead``: {member: queues it may lead} (a member missing from it may lead any queue).
    """
    names = sorted(set(members))
    if not names:
        return {}
    holders = holders or {}
    prefer = prefer or {}
    lead = lead or {}
    result: dict[str, str] = {}
    free: list[str] = []
    for queue in sorted(set(queues)):
        pinned = prefer.get(queue)
        if pinned in names and may_lead(pinned, queue, lead):
            result[queue] = pinned
        else:
            free.append(queue)
    cap = math.ceil(len(free) / len(names)) if free else 0
    load = dict.fromkeys(names, 0)
    kept: dict[str, list[str]] = {}
    for queue in free:
        holder = holders.get(queue)
        if holder in load and may_lead(holder, queue, lead):
            kept.setdefault(holder, []).append(queue)
    for holder, held in kept.items():
        for queue in sorted(held, key=lambda q: rank(q, holder), reverse=True)[:cap]:
            result[queue] = holder
            load[holder] += 1
    # The queues with the fewest candidates choose first, so that a restricted queue is not
    # left without room by queues that could have gone anywhere.
    rest = [q for q in free if q not in result]
    choices = {q: _ranked(q, [m for m in names if may_lead(m, q, lead)]) for q in rest}
    for queue in sorted(rest, key=lambda q: (len(choices[q]), q)):
        ranked = choices[queue]
        if not ranked:
            continue
        chosen = next((m for m in ranked if load[m] < cap), ranked[0])
        result[queue] = chosen
        load[chosen] += 1
    return result


def _ranked(queue: str, members: list[str]) -> list[str]:
    """``members`` from the first choice of ``queue`` to its last."""
    return sorted(members, key=lambda m: rank(queue, m), reverse=True)
