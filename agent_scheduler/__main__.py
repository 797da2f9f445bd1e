"""``python -m agent_scheduler``: the same as the ``agent-scheduler`` command."""
from agent_scheduler.cli.main import app

app(prog_name="agent-scheduler")
