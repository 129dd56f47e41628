"""``python -m ckptd``: the same as the ``ckptd`` command."""

from ckptd.cli.main import main

main()
