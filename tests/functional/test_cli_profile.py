"""`make run` writes the CLI's profile (a local-system part, so not a pure unit test)."""
from __future__ import annotations

URL = "http://127.0.0.1:8000/api"
TOKEN = "tok-secret-123"


def test_make_run_writes_the_profile_only_where_told(tmp_path):
    from agent_scheduler.cli.profile import read_profile
    from local.run import write_cli_profile

    target = tmp_path / ".local" / "profile.json"
    assert write_cli_profile(URL, TOKEN, "ws://127.0.0.1:8001", env={}) is None and not target.exists()
    target.parent.mkdir()
    target.write_text("{}")
    target.chmod(0o644)
    assert write_cli_profile(URL, TOKEN, "ws://127.0.0.1:8001", env={"SCHEDULER_PROFILE": str(target)}) == str(target)
    assert target.stat().st_mode & 0o777 == 0o600
    assert read_profile(target) == {"url": URL, "token": TOKEN, "wsUrl": "ws://127.0.0.1:8001"}
