from hub.migrations import run_env
from intake.projections import metadata

run_env(metadata)
