#!/usr/bin/python3
"""Runs a command on a pseudo-terminal, like a person at a shell: each line
read on stdin is typed into the terminal, and everything the terminal shows
is copied to stdout (each chunk followed by a newline, so a prompt that ends
without one is seen at once). Exits with the command's exit code.

usage: pty_relay.py COMMAND [ARG...]
"""
import os
import pty
import select
import sys


def main():
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[1], sys.argv[1:])
    stdin = sys.stdin.fileno()
    open_inputs = [fd, stdin]
    while True:
        ready, _, _ = select.select(open_inputs, [], [], 30)
        if not ready:
            break
        if fd in ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            sys.stdout.write(data.decode(errors="replace") + "\n")
            sys.stdout.flush()
        if stdin in ready:
            line = os.read(stdin, 4096)
            if not line:
                open_inputs.remove(stdin)
                continue
            os.write(fd, line.replace(b"\n", b"\r"))
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
