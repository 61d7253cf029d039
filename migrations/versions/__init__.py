"""Schema revisions, applied in order by `identity migrate`."""
