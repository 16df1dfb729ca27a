"""The hot answers' compiled dumpers write the JSON marshmallow and Flask would have written.

The schemas stay the contract: for every hot schema, `compile_dump` + `json_response` must
give the same JSON value, keys in the same order, as `schema.dump` + Flask's `jsonify`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask, jsonify
from marshmallow import Schema, fields, post_dump

from mobile_api.compiled_dump import compile_dump, json_response
from mobile_api.delta_sync.schemas import SyncSchema
from mobile_api.directory.schemas import DirectoryResultSchema
from mobile_api.mailboxes.schemas import MailboxSchema, MessagePageSchema
from mobile_api.messages.schemas import MessageSchema


def envelope(n: int, **changes: Any) -> dict[str, Any]:
    value = {
        "id": f"msg_{n}",
        "mailbox_id": "mbx_1",
        "folder": "INBOX",
        "subject": f"Compte rendu n°{n} — écho",
        "from_": {"name": "Dr Élise Exp", "address": "exp@ch.mssante.fr"},
        "to": [{"name": None, "address": "dr@chu.mssante.fr"}],
        "cc": [],
        "date": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * n, microseconds=n),
        "seen": n % 2 == 0,
        "flagged": False,
        "answered": True,
        "has_attachments": False,
        "size": 20_000 + n,
        "mdn_requested": False,
        "urgent": n % 3 == 0,
        "malformed": False,
        "patient": {"ins": "1234567890123", "name": "DUPONT Jeanne", "birth_date": "1950-01-01"},
        "receipts": [{"type": "read", "at": "2024-01-02T10:00:00+00:00", "recipient": "x@y.fr"}],
    }
    value.update(changes)
    return value


ODD_ENVELOPES = [
    envelope(1),
    envelope(2, subject=None, from_=None, patient=None, receipts=[]),
    # Stored documents may hold keys the contract does not show: marshmallow drops them.
    envelope(3, from_={"address": "a@b.fr", "extra": "hidden"}, to=[{"address": "c@d.fr"}]),
    envelope(4, date=datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))),
    envelope(5, patient={"ins": None}, cc=[{"name": "Zoë", "address": "z@e.fr"}]),
]

CASES = {
    "listing page": (
        MessagePageSchema(),
        {"items": ODD_ENVELOPES, "next": "AbC-_9"},
    ),
    "last page": (MessagePageSchema(), {"items": [], "next": None}),
    "sync": (
        SyncSchema(),
        {
            "state": "st-1",
            "changes": [
                {"op": "upsert", "message": envelope(6)},
                {"op": "delete", "message": {"id": "msg_7", "mailbox_id": "mbx_1"}},
            ],
            "more": True,
            "removed_mailboxes": ["mbx_9"],
        },
    ),
    "mailboxes": (
        MailboxSchema(many=True),
        [
            {
                "id": "mbx_1",
                "address": "dr@chu.mssante.fr",
                "kind": "PER",
                "display_name": None,
                "role": "owner",
                "unread": 3,
                "total": 10,
                "sync": {"state": "ok", "detail": None},
            }
        ],
    ),
    "directory": (
        DirectoryResultSchema(),
        {
            "items": [
                {
                    "address": "helene.lefevre@chu-test.mssante.fr",
                    "kind": "PER",
                    "name": "Hélène Lefèvre",
                    "profession": "Médecin",
                    "specialty": "Pédiatrie",
                    "organisation": "CHU de Test",
                    "service": None,
                    "street": "3 rue de la Paix",
                    "postcode": "75015",
                    "city": "PARIS",
                    "national_id": "81000000000",
                    "rank": "establishment",
                    "in_directory": True,  # the hit's own field, not in the answer
                },
                {"address": "bloc@chu-test.mssante.fr", "kind": "APP", "name": None, "rank": "x"},
            ]
        },
    ),
    "message": (
        MessageSchema(),
        envelope(
            8,
            text="Bonjour,\nrésultats joints.",
            html=None,
            headers={"X-MSS-Foo": "1"},
            warnings=["malformed"],
            attachments=[
                {
                    "part": "2",
                    "filename": "cr.pdf",
                    "content_type": "application/pdf",
                    "size": 1234,
                    "warnings": [],
                    "documents": None,
                },
                {
                    "part": "3",
                    "filename": None,
                    "content_type": "application/zip",
                    "size": 99,
                    "warnings": ["archive"],
                    "documents": [
                        {
                            "title": "CR",
                            "code": "11490-0",
                            "code_display": None,
                            "class_code": None,
                            "content_type": "text/xml",
                            "part": "3/xdm/1",
                            "patient": None,
                        }
                    ],
                },
            ],
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_dump_writes_the_json_marshmallow_and_flask_write(case: str) -> None:
    schema, value = CASES[case]
    app = Flask(__name__)
    with app.app_context():
        expected = jsonify(schema.dump(value)).get_data()
        compiled = json_response(compile_dump(schema)(value)).get_data()
    # Same value, same keys in the same order (object_pairs_hook keeps the order as written).
    as_pairs = {"object_pairs_hook": list}
    assert json.loads(compiled, **as_pairs) == json.loads(expected, **as_pairs)
    assert json.loads(compiled) == json.loads(expected)


def test_a_schema_with_dump_hooks_is_refused_rather_than_dumped_differently() -> None:
    class Hooked(Schema):
        name = fields.String()

        @post_dump
        def shout(self, data: dict, **kwargs: Any) -> dict:
            return {k: v.upper() for k, v in data.items()}

    with pytest.raises(TypeError, match="hooks"):
        compile_dump(Hooked())


def test_a_field_with_a_dump_default_is_refused() -> None:
    class Defaulted(Schema):
        name = fields.String(dump_default="x")

    with pytest.raises(TypeError, match="dump defaults"):
        compile_dump(Defaulted())
