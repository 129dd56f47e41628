"""The control area of an S3 store (``<prefix>/.ckptd/``): leases and membership records.

Only conditional writes touch them (:class:`~ckptd.store.objects.ControlObjects`). These
requests skip the queue of the store's own and run on an event loop of their own: a big
group of job writes must never delay a lease renewal. They are not fenced either: they are
what the fence is made of.
"""

from __future__ import annotations

from ckptd.store.objects import CONTROL_DIR, Conflict
from ckptd.store.s3.requests import S3Requests


class S3ControlObjects:
    """:class:`~ckptd.store.objects.ControlObjects` in an S3 bucket."""

    def __init__(self, req: S3Requests, prefix: str, shared: bool) -> None:
        self.req = req
        self.base = f"{prefix}/{CONTROL_DIR}"
        self.shared = shared

    def get(self, name: str) -> tuple[bytes, str] | None:
        path = f"{self.base}/{name}"
        return self.req.run_control(lambda: self.req.get_tagged(path, f"read {path}",
                                                                 queued=False))

    def put(self, name: str, data: bytes, *, create: bool = False,
            if_match: str | None = None) -> str:
        path = f"{self.base}/{name}"
        return self.req.run_control(lambda: self.req.put(path, data, f"write {path}",
                                                         create=create, if_match=if_match,
                                                         fenced=False))

    def delete(self, name: str, if_match: str | None = None) -> None:
        path = f"{self.base}/{name}"
        try:
            self.req.run_control(lambda: self.req.delete(path, f"delete {path}",
                                                         if_match=if_match, fenced=False))
        except Conflict:
            pass  # another ETag: not the object meant any more, it stays

    def names(self, prefix: str) -> list[str]:
        objects, _ = self.req.run_control(lambda: self.req.list(self.base, delimiter=False,
                                                                 queued=False))
        return sorted(o.name for o in objects if o.name.startswith(prefix))

    def tagged(self, prefix: str) -> dict[str, str]:
        objects, _ = self.req.run_control(lambda: self.req.list(self.base, delimiter=False,
                                                                 queued=False))
        return {o.name: o.etag for o in objects if o.name.startswith(prefix)}
