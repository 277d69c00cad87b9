"""Started in every Python process of a contained run (via PYTHONPATH): refuse network sockets and
writes to protected folders from Python code, and report each refusal on stderr.

This is the portable layer of autograder/sandbox.py: on Linux the kernel's namespaces already enforce
both, on other platforms this hook is what there is. Audit hooks cannot be removed once added, but
code outside Python (a subprocess, ctypes) does not pass through them.
"""

import json
import os
import sys


def _install() -> None:
    settings = json.loads(os.environ.get("RICE_LAB_SANDBOX") or "null")
    if not settings:
        return
    network = bool(settings.get("network"))
    protect = tuple(os.path.normcase(os.path.realpath(p)) for p in settings.get("protect", ()))
    writable = tuple(os.path.normcase(os.path.realpath(p)) for p in settings.get("writable", ()))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    inet = {2, 10, 23, 30}  # AF_INET, AF_INET6 (Linux 10, Windows 23, macOS 30)
    local = {None, "", "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1", b"::1"}
    stderr = sys.__stderr__

    def inside(path, folders):
        return any(path == f or path.startswith(f + os.sep) for f in folders)

    def refuse_write(path):
        if isinstance(path, int) or path is None:
            return
        try:
            real = os.path.normcase(os.path.realpath(os.fsdecode(path)))
        except (TypeError, ValueError):
            return
        if inside(real, protect) and not inside(real, writable):
            if "__pycache__" not in real and stderr is not None:
                print(f"rice-lab sandbox: refused a write to {real}", file=stderr, flush=True)
            raise PermissionError(f"rice-lab sandbox: {real} is read-only while grading")

    def hook(event, args):
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (mode is None and isinstance(flags, int) and flags & write_flags)
            if writing:
                refuse_write(path)
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                       "os.utime", "os.symlink", "os.link", "shutil.rmtree"):
            refuse_write(args[0] if event not in ("os.symlink", "os.link") else args[1])
        elif event == "os.rename":
            refuse_write(args[0])
            refuse_write(args[1])
        elif not network and (
                (event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex")
                 and args and args[0] not in local)
                or (event in ("socket.connect", "socket.sendto", "socket.sendmsg")
                    and getattr(args[0], "family", None) in inet)):
            # Creating or binding a socket is harmless (libraries probe IPv6 that way); reaching out is not.
            if stderr is not None:
                print("rice-lab sandbox: refused a network connection", file=stderr, flush=True)
            raise PermissionError("rice-lab sandbox: no network while grading")

    sys.addaudithook(hook)


_install()
del _install
