#!/usr/bin/env python3
"""Socket activation the way systemd does it, for tests: bind listeners on free loopback
ports, print their addresses as one JSON line, put them at fds 3.., set LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID, and exec the command (same pid).

usage: socket_activate.py NAME[,NAME...] -- COMMAND ARGS...
"""
import json
import os
import socket
import sys

names = sys.argv[1].split(",")
cmd = sys.argv[sys.argv.index("--") + 1:]
socks = []
for _ in names:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    socks.append(s)
print(json.dumps({n: "%s:%d" % s.getsockname() for n, s in zip(names, socks)}), flush=True)
# Move the sockets to 3, 4, ... without clobbering one another.
dups = [os.dup(s.fileno()) for s in socks]
for i, fd in enumerate(dups):
    os.dup2(fd, 3 + i, inheritable=True)
env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_FDNAMES=":".join(names), LISTEN_PID=str(os.getpid()))
os.execvpe(cmd[0], cmd, env)
