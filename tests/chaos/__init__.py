"""`make chaos`: the hub under faults; see run.py."""
