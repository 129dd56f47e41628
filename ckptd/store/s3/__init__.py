"""The S3 store: concurrent requests through obstore (or botocore), conditional writes, options."""
