"""``ckptd encryption-key``: a new key for encryption at rest (docs/guide/encryption.md)."""

from __future__ import annotations

import click

from ckptd.cli.options import Command
from ckptd.codec.crypto import new_key_line


@click.command("encryption-key", cls=Command, epilog="""Examples:
  ckptd encryption-key --id k1 > keys        # then: encryption_key_file = "keys"
  ckptd encryption-key --id k2 | cat - keys > keys.new && mv keys.new keys   # rotate""")
@click.option("--id", "key_id", default="k1", show_default=True, metavar="ID",
              help="The key's id, named in every value it seals.")
def encryption_key(key_id: str) -> None:
    """Print a new random AES-256 key as a line of a key file (ID:BASE64).

    The first line of the key file seals; every line opens. To rotate, put a new key at
    the top; remove an old one only when nothing sealed with it is left.
    """
    click.echo(new_key_line(key_id))


COMMANDS = (encryption_key,)
