"""One sender for the dispatcher: FCM for the apps, Web Push for the browsers.

`backend.push.payloads` marks a browser's push with a Web Push config (its Urgency, Topic
and TTL headers); everything else goes to FCM, which reaches Android and, through APNs,
iOS. Outcomes come back in the order of the messages, as from any sender.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

from firebase_admin import messaging

from backend.config import Settings
from backend.push.fcm import Sender, create_sender
from backend.push.futures import gather, then
from backend.push.outcomes import Outcome
from backend.push.webpush import WebPushSender

log = logging.getLogger("estafette.push")


class RoutingSender:
    def __init__(self, apps: Sender, browsers: Sender | None) -> None:
        self._apps = apps
        self._browsers = browsers

    def send(self, messages: list[messaging.Message]) -> list[Outcome]:
        return self.submit(messages).result()

    def submit(self, messages: list[messaging.Message]) -> Future[list[Outcome]]:
        web = [i for i, m in enumerate(messages) if m.webpush is not None]
        if not web:
            return self._apps.submit(messages)
        apps = [i for i, m in enumerate(messages) if m.webpush is None]
        parts: list[tuple[list[int], Future[list[Outcome]]]] = []
        if apps:
            parts.append((apps, self._apps.submit([messages[i] for i in apps])))
        if self._browsers is not None:
            parts.append((web, self._browsers.submit([messages[i] for i in web])))
        else:
            unconfigured: Future[list[Outcome]] = Future()
            unconfigured.set_result([Outcome.failed("WEB_PUSH_NOT_CONFIGURED")] * len(web))
            parts.append((web, unconfigured))

        def reassemble(results: list[list[Outcome]]) -> list[Outcome]:
            outcomes: list[Outcome | None] = [None] * len(messages)
            for (indexes, _future), part in zip(parts, results, strict=True):
                for index, outcome in zip(indexes, part, strict=True):
                    outcomes[index] = outcome
            return [o for o in outcomes if o is not None]

        return then(gather([future for _indexes, future in parts]), reassemble)

    def close(self) -> None:
        self._apps.close()
        if self._browsers is not None:
            self._browsers.close()


def create_senders(settings: Settings) -> RoutingSender:
    """FCM as configured (or the log), and Web Push when a VAPID key and subject are."""
    browsers = None
    if settings.web_push_configured:
        browsers = WebPushSender(
            settings.vapid_private_key,
            settings.vapid_subject,
            settings.web_push_origins,
            ca_bundle=settings.ca_bundle,
        )
    else:
        log.info("ESTAFETTE_VAPID_PRIVATE_KEY/SUBJECT not set: no Web Push for browsers")
    return RoutingSender(create_sender(settings.fcm_credentials, settings.fcm_endpoint), browsers)
