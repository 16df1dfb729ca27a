"""`flask --app mobile_api keys ...`: the key rotation commands (infra/README, "Key rotation").

They print key ids and counts, never a key or a value.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from backend.admin.audited_changes import CLI
from backend.storage import encryption
from backend.storage.key_rotation import DEFAULT_BATCH, TableProgress, rotate_data
from mobile_api.cli import needs_current_schema

keys_cli = AppGroup("keys", help="Data and signing key rotation.")


@keys_cli.command("rotate-data")
@click.option("--batch", type=click.IntRange(1, 10_000), default=DEFAULT_BATCH, show_default=True)
@needs_current_schema
def rotate_data_command(batch: int) -> None:
    """Re-seal every stored secret under the first key of ESTAFETTE_DATA_KEYS.

    Online (short transactions) and resumable: run it again after an interruption.
    """
    services = current_app.extensions["estafette"]
    current = encryption.current_key_id()
    click.echo(f"re-sealing under data key {current!r}, {batch} rows a transaction")

    def show(progress: TableProgress) -> None:
        click.echo(
            f"  {progress.table}: {progress.rows} rows read, {progress.resealed} re-sealed"
            + (f", {progress.raced} already rewritten" if progress.raced else "")
        )

    report = rotate_data(services.sessions, batch=batch, progress=show)
    resealed = sum(table.resealed for table in report)
    passes = 1
    while sum(table.raced for table in report):  # rewritten meanwhile: check them again
        if passes == 4:
            raise click.ClickException(
                "rows keep being rewritten under another key: is every process on the new ring?"
            )
        click.echo("some rows were rewritten meanwhile: checking again")
        report = rotate_data(services.sessions, batch=batch, progress=show)
        resealed += sum(table.resealed for table in report)
        passes += 1
    services.audit.record(
        "keys.rotate_data",
        actor=CLI,
        target_type="data_key",
        target=current,
        details={"resealed": resealed},
    )
    click.echo(
        f"done: {resealed} rows re-sealed; every value is now under {current!r}, "
        "older keys can leave ESTAFETTE_DATA_KEYS"
    )
