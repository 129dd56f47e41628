"""What travels over ZeroMQ: the message format, CURVE keys, endpoints, upload parts."""
