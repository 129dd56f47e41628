"""The daemon's side of submit-file --connect: parts in order, repeats, limits, idle drops."""

from __future__ import annotations

import pytest

from ckptd.core.errors import ProtocolError
from ckptd.wire import protocol
from ckptd.wire.control_requests import Upload
from ckptd.wire.uploads import UploadError, Uploads, encode_part


def part(token: str, offset: int, data: bytes) -> Upload:
    return Upload(upload=token, offset=offset, data=encode_part(data))


def test_parts_in_order_make_the_file_once() -> None:
    uploads = Uploads()
    assert uploads.add(part("u", 0, b"abc"), 0.0) == 3
    assert uploads.add(part("u", 3, b"def"), 1.0) == 6
    assert uploads.add(part("u", 3, b"def"), 2.0) == 6, "a part sent again is taken once"
    assert uploads.held == 6
    assert uploads.take("u", 6, 3.0) == b"abcdef"
    assert uploads.held == 0
    with pytest.raises(UploadError, match="no upload 'u'"):
        uploads.take("u", 6, 4.0)


def test_an_empty_file_is_one_empty_part() -> None:
    uploads = Uploads()
    assert uploads.add(part("e", 0, b""), 0.0) == 0
    assert uploads.take("e", 0, 0.0) == b""


@pytest.mark.parametrize("body, message", [
    (part("u", 4, b"x"), "does not follow"),
    (part("u", 1, b"x"), "does not follow"),
    (Upload(upload="u", offset=2, data="%%%"), "not valid base64"),
])
def test_a_bad_part_is_refused_and_the_upload_kept(body: Upload, message: str) -> None:
    uploads = Uploads()
    uploads.add(part("u", 0, b"ab"), 0.0)
    with pytest.raises(UploadError, match=message):
        uploads.add(body, 0.0)
    assert uploads.take("u", 2, 0.0) == b"ab"


@pytest.mark.parametrize("body, field", [
    ({"upload": "u", "offset": 2}, "upload.data is missing"),
    ({"upload": "u", "offset": "2", "data": ""}, "upload.offset has a bad value"),
    ({"upload": "../etc", "offset": 0, "data": ""}, "upload.upload has a bad value"),
])
def test_a_part_of_the_wrong_shape_never_reaches_the_uploads(body: dict[str, object],
                                                             field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        protocol.decode_request(protocol.request(b"upload", body))


def test_a_size_that_does_not_match_is_refused() -> None:
    uploads = Uploads()
    uploads.add(part("u", 0, b"ab"), 0.0)
    with pytest.raises(UploadError, match="has 2 bytes, not 3"):
        uploads.take("u", 3, 0.0)


def test_the_memory_limit_holds_across_uploads() -> None:
    uploads = Uploads(max_bytes=10)
    uploads.add(part("a", 0, b"x" * 6), 0.0)
    with pytest.raises(UploadError, match="upload_limit_total = 10"):
        uploads.add(part("b", 0, b"x" * 5), 0.0)
    uploads.take("a", 6, 0.0)
    assert uploads.add(part("b", 0, b"x" * 5), 0.0) == 5


def test_one_client_holds_at_most_its_share() -> None:
    uploads = Uploads(max_bytes=100, max_client_bytes=10)
    uploads.add(part("a", 0, b"x" * 6), 0.0, b"client-1")
    with pytest.raises(UploadError, match="upload_limit_client = 10"):
        uploads.add(part("b", 0, b"x" * 5), 0.0, b"client-1")  # a second upload: the same
    with pytest.raises(UploadError, match="upload_limit_client = 10"):
        uploads.add(part("a", 6, b"x" * 5), 0.0, b"client-2")  # its upload, another socket
    assert uploads.add(part("c", 0, b"x" * 9), 0.0, b"client-2") == 9  # others go on
    assert uploads.refused == 2 and uploads.held == 15


def test_an_idle_upload_is_dropped() -> None:
    uploads = Uploads(idle=60.0)
    uploads.add(part("u", 0, b"ab"), 0.0)
    uploads.add(part("v", 0, b"cd"), 50.0)
    with pytest.raises(UploadError, match="idle over 60s"):
        uploads.add(part("u", 2, b"cd"), 61.0)
    assert uploads.take("v", 2, 61.0) == b"cd"
