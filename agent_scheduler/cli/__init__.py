"""The ``agent-scheduler`` command (Typer): ``main`` holds the commands, ``apply`` the
agents-as-code planner, ``tail`` the event stream, ``profile`` where URL and token come from."""
