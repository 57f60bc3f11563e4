"""`python -m participants.runtime.forkserver`: one interpreter that has imported the runtime once
and forks each participant process from there.

Why: a participant process spends almost all of its start importing SQLAlchemy, SQLModel,
pydantic and nats-py (0.7 s of CPU of 0.8 on the 2-core machine); a fork of an interpreter that
did so once is ready in about 0.1 s. The supervisor (sagactl/system/forking.py) starts one per
state directory and asks it for processes; what it forks runs exactly what `python -m
participants.runtime REF` runs, with the environment, working directory and log it was given.

The protocol is one JSON line per request on stdin (`{"reference", "env", "cwd", "log"}`) and one
per reply on stdout (`{"pid": n}` or `{"error": "..."}`). Each participant is forked twice (its
parent exits at once), so it belongs to the supervisor, which has made itself a child subreaper:
it waits for the process and reads its exit status as it would a child it spawned. The server
imports no participant (only the runtime), opens nothing and starts no thread, so a fork has
nothing half-done to inherit; it exits when its stdin closes (the supervisor stopped or died).
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from typing import Any

import orjson

from participants.runtime.__main__ import main as run_participant

try:  # what run() installs: imported here once too (no participant's own module is, see above)
    import uvloop  # noqa: F401
except ImportError:
    pass


def serve() -> None:
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    ready = orjson.dumps({"ready": os.getpid()}, option=orjson.OPT_APPEND_NEWLINE)
    replies.write(ready)
    replies.flush()
    for line in requests:
        try:
            reply: dict[str, Any] = {"pid": spawn(orjson.loads(line))}
        except Exception as exc:  # a bad request or a failed fork: the supervisor spawns it itself
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(orjson.dumps(reply, option=orjson.OPT_APPEND_NEWLINE))
        replies.flush()


def spawn(request: dict[str, Any]) -> int:
    """Fork a participant process for this request (through a parent that exits); its pid."""
    read_end, write_end = os.pipe()
    parent = os.fork()
    if parent == 0:  # the short-lived parent: fork the participant, tell its pid, exit
        os.close(read_end)
        code = 0
        try:
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                _become_participant(request)  # never returns
            os.write(write_end, b"%d" % pid)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    try:
        pid_text = os.read(read_end, 32)
    finally:
        os.close(read_end)
        os.waitpid(parent, 0)
    if not pid_text:
        raise OSError("the fork failed")
    return int(pid_text)


def _become_participant(request: dict[str, Any]) -> None:
    """In the forked process: what `Popen([python, -m, participants.runtime, REF], env=, cwd=,
    stdout=log, stderr=STDOUT, start_new_session=True)` would have set up, then the runtime."""
    code = 1
    try:
        os.setsid()
        cwd = request["cwd"]
        os.chdir(cwd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        nothing = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nothing, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(nothing)
        env = request["env"]
        os.environ.clear()
        os.environ.update(env)
        # What the interpreter would have made of them at its start: `-m` puts the working
        # directory first, PYTHONPATH comes next.
        extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [cwd, *extra, *(p for p in sys.path[1:] if p not in extra)]
        sys.argv = [sys.argv[0], request["reference"]]
        try:
            run_participant()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                sys.stderr.write(f"{exc.code}\n")
        except BaseException:
            traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what the interpreter runs at exit; then no return to the server's loop
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    serve()
