"""The local-disk store: rename(2) between state folders, durable writes, locks and control
files."""
