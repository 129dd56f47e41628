"""How the client treats a daemon that is not active: over a real ZeroMQ socket on 127.0.0.1,
answered by a scripted ROUTER (the daemon's side of the control protocol)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import zmq

from ckptd.client.client import Client
from ckptd.core.errors import RemoteError, Standby, TakingOver
from ckptd.wire import protocol


class Scripted:
    """A ROUTER that answers each request with the next of ``answers`` (frames after the
    identity) and counts what it got."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.answers = list(answers)
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            self.requests += 1
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            self.sock.send_multipart([frames[0], *answer])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        self.ctx.term()


TAKING_OVER = protocol.reply_error(TakingOver.code, "this daemon is taking the lease", 7)
STANDBY = protocol.reply_error(Standby.code, "the active daemon is b", 7)


@pytest.fixture
def scripted() -> Iterator[list[Scripted]]:
    made: list[Scripted] = []
    yield made
    for one in made:
        one.close()


def test_a_daemon_taking_over_is_asked_again_until_it_answers(
        scripted: list[Scripted]) -> None:
    daemon = Scripted([TAKING_OVER, TAKING_OVER, TAKING_OVER, protocol.reply_ok({"n": 1})])
    scripted.append(daemon)
    with Client(daemon.endpoint, timeout=10) as client:
        assert client.request("status") == {"n": 1}
    assert daemon.requests == 4


def test_a_daemon_taking_over_for_too_long_is_reported_at_the_timeout(
        scripted: list[Scripted]) -> None:
    daemon = Scripted([TAKING_OVER])
    scripted.append(daemon)
    with Client(daemon.endpoint, timeout=1.0) as client:
        with pytest.raises(RemoteError, match="taking the lease") as info:
            client.request("status")
    assert info.value.kind == "taking_over" and isinstance(info.value, TakingOver)
    assert daemon.requests >= 3


def test_a_standby_with_an_active_peer_is_reported_at_once(scripted: list[Scripted]) -> None:
    daemon = Scripted([STANDBY])
    scripted.append(daemon)
    with Client(daemon.endpoint, timeout=30) as client:
        with pytest.raises(RemoteError, match="active daemon is b") as info:
            client.request("status")
    assert isinstance(info.value, Standby) and not isinstance(info.value, TakingOver)
    assert daemon.requests == 1


def test_a_client_with_two_addresses_goes_past_a_standby(scripted: list[Scripted]) -> None:
    standby = Scripted([STANDBY])
    active = Scripted([protocol.reply_ok({"active": True})])
    scripted.extend([standby, active])
    with Client([standby.endpoint, active.endpoint], timeout=10) as client:
        assert client.request("status") == {"active": True}


def test_a_client_left_unclosed_is_freed_without_the_cycle_collector() -> None:
    """No reference cycle: a forgotten client goes with its last reference, not at a random
    moment of the cycle collector (which once hung a process in zmq's context term)."""
    import gc
    import weakref

    client = Client("tcp://127.0.0.1:9", timeout=0.2)
    ref = weakref.ref(client)
    gc.disable()
    try:
        del client
        assert ref() is None
    finally:
        gc.enable()
