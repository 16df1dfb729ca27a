"""`auth.required`: the owner of an `oauth_user` mailbox is asked to sign in again, through
the one outbox and payload builder, with a push that says nothing else."""

from __future__ import annotations

from sqlalchemy import update

from backend.push.dispatcher import Dispatcher
from backend.push.outbox import announce_auth_required
from backend.storage.database import session_scope
from backend.storage.models import Membership
from devtools.drills.world import World
from devtools.fcm_server import FakeFcm


def test_only_the_owners_devices_are_asked_to_sign_in_again_with_no_content(
    world: World, dispatcher: Dispatcher, fake_fcm: FakeFcm
) -> None:
    owner, delegate = world.user(), world.user()
    world.device(owner, "owner-phone")
    world.device(delegate, "delegate-phone")
    mailbox_id, _public_id = world.mailbox(owner, delegate)
    with session_scope(world.sessions) as db:
        db.execute(
            update(Membership)
            .where(Membership.mailbox_id == mailbox_id, Membership.user_id == delegate)
            .values(role="delegate")
        )
        announce_auth_required(db, mailbox_id=mailbox_id)

    assert dispatcher.drain() == 1

    [request] = fake_fcm.requests
    assert request.token == "owner-phone"
    assert request.data == {"v": "1", "type": "auth.required"}
