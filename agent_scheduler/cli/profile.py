"""Where the CLI finds the API URL and token.

In order: the global options ``--url``/``--token``; the environment
(``SCHEDULER_URL``, ``SCHEDULER_TOKEN``, ``SCHEDULER_WS_URL``); a profile file.
The profile is JSON ``{"url", "token", "wsUrl"?}`` with mode 0600, looked up at
``SCHEDULER_PROFILE`` if set, else ``.local/profile.json`` in the current
directory or the nearest parent that has one (``make run`` writes it there for
the local system), else ``$XDG_CONFIG_HOME/agent-scheduler/profile.json``
(default ``~/.config/...``) for a deployed stack.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

URL_ENV = "SCHEDULER_URL"
TOKEN_ENV = "SCHEDULER_TOKEN"
WS_URL_ENV = "SCHEDULER_WS_URL"
PROFILE_ENV = "SCHEDULER_PROFILE"
LOCAL_PROFILE = Path(".local") / "profile.json"


class ProfileError(Exception):
    """A profile that cannot be read: the message names the file."""


@dataclass(frozen=True)
class Endpoint:
    url: str | None
    token: str | None
    ws_url: str | None
    source: str  # where the URL came from: "option", "environment" or the profile's path

    def __repr__(self) -> str:  # never the token
        return f"Endpoint(url={self.url!r}, ws_url={self.ws_url!r}, source={self.source!r}, token={'***' if self.token else None})"


def user_profile_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "agent-scheduler" / "profile.json"


def find_profile(env: Mapping[str, str], cwd: Path) -> Path | None:
    explicit = env.get(PROFILE_ENV)
    if explicit is not None:
        return Path(explicit) if explicit.strip() else None  # empty: no profile
    for folder in (cwd, *cwd.parents):
        candidate = folder / LOCAL_PROFILE
        if candidate.is_file():
            return candidate
    candidate = user_profile_path(env)
    return candidate if candidate.is_file() else None


def read_profile(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"profile {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"profile {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} must be a JSON object with url and token")
    for key in ("url", "token", "wsUrl"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ProfileError(f"profile {path}: {key} must be a string")
    return data


def resolve(url: str | None, token: str | None, ws_url: str | None, *, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> Endpoint:
    """Each value from the first place that has it: option, environment, profile."""
    env = os.environ if env is None else env
    source = "option" if url else ("environment" if env.get(URL_ENV) else "")
    url = url or env.get(URL_ENV) or None
    token = token or env.get(TOKEN_ENV) or None
    ws_url = ws_url or env.get(WS_URL_ENV) or None
    if url is None or token is None or ws_url is None:
        path = find_profile(env, cwd or Path.cwd())
        if path is not None:
            data = read_profile(path)
            if url is None and data.get("url"):
                url, source = data["url"], str(path)
            token = token or data.get("token") or None
            ws_url = ws_url or data.get("wsUrl") or None
    return Endpoint(url, token, ws_url, source)


def write_profile(path: Path, url: str, token: str, ws_url: str | None = None) -> Path:
    """Write the profile readable by its owner only (0600), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"url": url, "token": token}
    if ws_url:
        data["wsUrl"] = ws_url
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
