"""``python -m ckptd``: the same as the ``ckptd`` command."""

from .cli import main

main()
