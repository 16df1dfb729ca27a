"""A sealed value moved between rows is an integrity alarm at the API, never a stack trace."""

from __future__ import annotations

from sqlalchemy import text

from tests.mailboxes.support import deliver, make_mailbox, sign_in


def test_a_subject_moved_from_another_message_is_refused_with_a_code(client, services) -> None:
    username, auth = sign_in(client, services)
    mailbox_id = make_mailbox(services, member=username)
    first, second = deliver(services, mailbox_id, 2, subject="Résultats patient Durand")
    # What a DBA could do: give one message the subject ciphertext of another.
    with services.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE messages SET subject ="
                " (SELECT subject FROM messages WHERE public_id = :first)"
                " WHERE public_id = :second"
            ),
            {"first": first, "second": second},
        )

    response = client.get(f"/api/v1/mailboxes/{mailbox_id}/messages", headers=auth)

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "sealed_value_rejected"
    assert "Durand" not in response.get_data(as_text=True)
