"""Agent Scheduler's command line and its typed HTTP client.

    from agent_scheduler.client import SchedulerClient

    with SchedulerClient("http://127.0.0.1:8000/api", token) as api:
        agent = api.create_agent({"name": "report", "kind": "echo"})
        run = api.run_agent(agent["id"], input={"hello": "world"})
"""
from __future__ import annotations

__version__ = "1.0.0"
