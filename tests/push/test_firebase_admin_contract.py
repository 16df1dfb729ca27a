"""firebase-admin's private names we rely on are still there (issue 14.2).

`backend/push/fcm_transport.py` reaches into firebase-admin at four points and leans on
three unwritten contracts. An upgrade that moves one would otherwise show up as pushes
failing in production; here it fails the suite, naming the touch and the pin.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import firebase_admin
import httpx
import pytest
from firebase_admin import credentials, exceptions, messaging

from backend.push import payloads
from backend.push.fcm import FcmSender
from devtools.fcm_server import FakeFcm

ROOT = Path(__file__).resolve().parents[2]


def _pin() -> str:
    match = re.search(r"^firebase_admin==\S+", (ROOT / "requirements.txt").read_text(), re.M)
    return match.group(0) if match else "firebase_admin (unpinned!)"


def _broken(touch: str, why: str) -> str:
    return (
        f"firebase-admin {firebase_admin.__version__} no longer offers {touch}: {why}. "
        f"backend/push/fcm_transport.py depends on it; the tested pin is {_pin()} in "
        "requirements.txt (and requirements.lock). Adapt the transport before moving the pin."
    )


@pytest.fixture
def fcm_app(fcm_credentials: Path):
    app = firebase_admin.initialize_app(
        credentials.Certificate(str(fcm_credentials)), name="contract-test"
    )
    yield app
    firebase_admin.delete_app(app)


def test_the_installed_firebase_admin_is_the_pinned_one() -> None:
    assert _pin() == f"firebase_admin=={firebase_admin.__version__}", _broken(
        "the pinned version", "another version is installed"
    )


def test_its_async_http_client_can_still_be_subclassed_as_we_do() -> None:
    from firebase_admin import _http_client

    client_class = getattr(_http_client, "HttpxAsyncClient", None)
    assert inspect.isclass(client_class), _broken("_http_client.HttpxAsyncClient", "missing")
    parameters = inspect.signature(client_class.__init__).parameters
    for name in ("credential", "timeout"):
        assert name in parameters, _broken("HttpxAsyncClient(credential=, timeout=)", name)
    assert inspect.iscoroutinefunction(getattr(client_class, "request", None)), _broken(
        "HttpxAsyncClient.request", "not a coroutine any more"
    )
    assert inspect.iscoroutinefunction(getattr(client_class, "aclose", None)), _broken(
        "HttpxAsyncClient.aclose", "not a coroutine any more"
    )
    source = inspect.getsource(client_class)
    for attribute in ("self.timeout", "self.base_url", "self._headers"):
        assert attribute in source, _broken(f"HttpxAsyncClient's {attribute}", "not set")


def test_the_messaging_service_still_has_its_url_and_async_client(fcm_app) -> None:
    getter = getattr(messaging, "_get_messaging_service", None)
    assert callable(getter), _broken("messaging._get_messaging_service", "missing")
    service = getter(fcm_app)
    assert isinstance(getattr(service, "_fcm_url", None), str), _broken(
        "_MessagingService._fcm_url", "no such attribute"
    )
    assert hasattr(service, "_async_client"), _broken(
        "_MessagingService._async_client", "no such attribute"
    )
    source = inspect.getsource(type(service).send_each_async)
    assert "self._async_client.request" in source, _broken(
        "send_each_async through self._async_client.request", "it sends another way"
    )
    assert "self._fcm_url" in source, _broken("send_each_async to self._fcm_url", "other URL")
    # The _Accepted contract: an accepted answer is read through .json() alone.
    assert "resp.json()" in source, _broken("send_each_async reading resp.json()", "changed")


@pytest.mark.parametrize(
    ("transport_error", "firebase_error"),
    [
        (httpx.ConnectError, exceptions.UnavailableError),
        (httpx.ReadTimeout, exceptions.DeadlineExceededError),
        (httpx.ConnectTimeout, exceptions.DeadlineExceededError),
    ],
)
def test_httpx_errors_still_map_to_the_firebase_errors_we_retry(
    transport_error: type[httpx.TransportError], firebase_error: type[Exception]
) -> None:
    from firebase_admin import _utils

    handler = getattr(_utils, "handle_httpx_error", None)
    assert callable(handler), _broken("_utils.handle_httpx_error", "missing")
    mapped = handler(transport_error("down", request=httpx.Request("POST", "https://fcm")))
    assert isinstance(mapped, firebase_error), _broken(
        f"{transport_error.__name__} -> {firebase_error.__name__}", type(mapped).__name__
    )


def test_a_push_goes_through_our_transport_end_to_end(fake_fcm: FakeFcm, fcm_credentials) -> None:
    """The three contracts together, against the local FCM: accepted, and then refused."""
    with FcmSender(fcm_credentials, fake_fcm.base_url) as sender:
        [accepted] = sender.send([payloads.new_mail("token-ok", "mbx_contract", 1)])
        fake_fcm.fail_all("unavailable", retry_after=3)
        [refused] = sender.send([payloads.new_mail("token-ok", "mbx_contract", 1)])
        fake_fcm.fail_all(None)
    assert accepted.kind.value == "ok", _broken("an accepted answer read as _Accepted", "failed")
    assert (refused.kind.value, refused.retry_after) == ("retry", 3.0), _broken(
        "an HTTP error answer raised as httpx.HTTPStatusError", repr(refused)
    )
