"""Many requests in flight on one client connection: each reply reaches the request it
answers, whatever order the daemon answers in. Over a real ZeroMQ socket on 127.0.0.1,
answered by a ROUTER that holds requests back and answers them in reverse."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import zmq

from ckptd.client.async_client import AsyncClient
from ckptd.client.client import Client
from ckptd.core.errors import ProtocolError, RemoteError
from ckptd.wire import protocol
from ckptd.wire.control_requests import Ping


class Reversing:
    """A ROUTER that waits for ``group`` requests, then answers them last first, each with
    the ``n`` its body carried (an error for ``n`` < 0), echoing the tags."""

    def __init__(self, group: int, tags: bool = True) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.group = group
        self.tags = tags
        self.seen_tags: set[bytes] = set()
        self.largest_group = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        held: list[tuple[bytes, bytes, int]] = []
        while not self._stop.is_set():
            if self.sock.poll(20):
                frames = self.sock.recv_multipart()
                tag = protocol.request_tag(frames[1:])
                _, body = protocol.decode_request(frames[1:])
                self.seen_tags.add(tag)
                queue = getattr(body, "queue", None) or "0"
                held.append((frames[0], tag, int(queue.removeprefix("q"))))
                if len(held) < self.group:
                    continue
            elif not held:
                continue
            self.largest_group = max(self.largest_group, len(held))
            for identity, tag, n in reversed(held):
                reply = (protocol.reply_ok({"n": n}, tag=tag if self.tags else b"") if n >= 0
                         else protocol.reply_error("error", f"refused {n}", 1,
                                                   tag=tag if self.tags else b""))
                self.sock.send_multipart([identity, *reply])
            held = []

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def reversing() -> Iterator[list[Reversing]]:
    made: list[Reversing] = []
    yield made
    for one in made:
        one.close()


def test_threads_sharing_a_client_each_get_their_own_answer(
        reversing: list[Reversing]) -> None:
    daemon = Reversing(group=8)
    reversing.append(daemon)
    answers: dict[int, list[int]] = {}
    with Client(daemon.endpoint, timeout=30) as client:
        def ask(thread: int) -> None:
            answers[thread] = [client.request("status", {"queue": f"q{thread * 100 + k}"})["n"]
                               for k in range(25)]

        threads = [threading.Thread(target=ask, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == {t: [t * 100 + k for k in range(25)] for t in range(8)}
    assert daemon.largest_group == 8, "the 8 threads had their requests in flight together"
    assert len(daemon.seen_tags) == 8 * 25 and b"" not in daemon.seen_tags


def test_an_error_answer_goes_to_its_own_request_only(reversing: list[Reversing]) -> None:
    daemon = Reversing(group=2)
    reversing.append(daemon)
    results: dict[str, object] = {}
    with Client(daemon.endpoint, timeout=30) as client:
        def ask(n: int) -> None:
            try:
                results[str(n)] = client.request("status", {"queue": f"q{n}"})["n"]
            except RemoteError as exc:
                results[str(n)] = str(exc)

        threads = [threading.Thread(target=ask, args=(n,)) for n in (7, -1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results["7"] == 7 and "refused" in str(results["-1"])


def test_a_daemon_that_answers_without_tags_still_answers_one_request_at_a_time(
        reversing: list[Reversing]) -> None:
    daemon = Reversing(group=1, tags=False)
    reversing.append(daemon)
    with Client(daemon.endpoint, timeout=10) as client:
        assert [client.request("status", {"queue": f"q{n}"})["n"] for n in range(5)] == \
            list(range(5))


def test_an_async_client_matches_answers_given_in_reverse(
        reversing: list[Reversing]) -> None:
    daemon = Reversing(group=16)
    reversing.append(daemon)

    async def main() -> list[int]:
        async with AsyncClient(daemon.endpoint, timeout=30) as client:
            answers = await asyncio.gather(*(client.request("status", {"queue": f"q{n}"})
                                             for n in range(64)))
            return [a["n"] for a in answers]

    assert asyncio.run(main()) == list(range(64))
    assert daemon.largest_group == 16


def test_a_tag_too_long_is_refused_by_the_decoder() -> None:
    frames = protocol.request(b"ping", {}, tag=b"x" * (protocol.MAX_TAG + 1))
    with pytest.raises(ProtocolError, match="tag"):
        protocol.decode_request(frames)
    assert protocol.request_tag(frames) == b""
    tagged = protocol.request(b"ping", {}, tag=b"t1")
    assert protocol.decode_request(tagged) == (b"ping", Ping())
    assert protocol.request_tag(tagged) == b"t1"
    reply = protocol.reply_ok({"n": 1}, tag=b"t1")
    assert protocol.reply_tag(reply) == b"t1" and protocol.decode_reply(reply) == (True, {"n": 1})
