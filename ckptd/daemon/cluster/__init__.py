"""Several daemons on one store: leases and locks per queue, membership, balance, routing and
forwarding, the bucket's role."""
