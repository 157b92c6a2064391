"""Jobs: records, leases, runners (local and Celery), events and the reconciler."""
