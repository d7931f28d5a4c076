from hub.migrations import run_env
from notifications.projections import metadata

run_env(metadata)
