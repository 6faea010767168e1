"""Tests of flup.server.preforkserver with real processes and loopback sockets.

Each test writes a small server script, runs ``PreforkServer`` in a
subprocess with a line-based job (see ``SERVER_SCRIPT``), and checks the
process tree through /proc (Linux only).
"""

from __future__ import absolute_import, print_function

import errno
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from flup.server import preforkserver
from flup.server.preforkserver import PreforkServer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The job reads one command line and replies:
#   pid          -> "<child pid>\n"
#   sleep S      -> "started <pid>\n", sleeps S seconds, then "<pid>\n"
#   wait S       -> "started <pid>\n", waits up to S seconds on wakeup_fds,
#                   then "stopped <pid>\n" if a stop was requested, else
#                   "timeout <pid>\n"
#   raise        -> raises RuntimeError without replying
#   crash        -> "started <pid>\n", then raises KeyboardInterrupt, which
#                   ends the child
#   gettimeout   -> "<timeout of the client socket>\n"
# The script prints "PORT <port>" once listening and "RESULT <value>"
# with the return value of run(), then whether the signal handlers run()
# replaced were restored.
SERVER_SCRIPT = r'''
from __future__ import print_function
import json, logging, os, signal, socket, sys, time
sys.path.insert(0, %(repo_root)r)
from flup.server._netio import wait_readable
from flup.server.preforkserver import PreforkServer

options = json.loads(sys.argv[1])
logging.basicConfig(
    stream=sys.stderr, level=logging.DEBUG,
    format='%%(process)d %%(levelname)s %%(name)s: %%(message)s')


class LineJob(object):
    def __init__(self, sock, addr, server):
        self.sock = sock
        self.server = server

    def run(self):
        data = b''
        while not data.endswith(b'\n'):
            chunk = self.sock.recv(100)
            if not chunk:
                return
            data += chunk
        words = data.decode('ascii').split()
        pid = os.getpid()
        if words[0] == 'raise':
            raise RuntimeError('job failed on purpose')
        if words[0] == 'crash':
            self.send('started %%d' %% pid)
            raise KeyboardInterrupt
        if words[0] == 'gettimeout':
            self.send('%%r' %% (self.sock.gettimeout(),))
            return
        if words[0] == 'sleep':
            self.send('started %%d' %% pid)
            time.sleep(float(words[1]))
        if words[0] == 'wait':
            self.send('started %%d' %% pid)
            wait_readable(self.server.wakeup_fds, float(words[1]))
            if self.server.stop_requested:
                self.send('stopped %%d' %% pid)
            else:
                self.send('timeout %%d' %% pid)
            return
        self.send('%%d' %% pid)

    def send(self, text):
        self.sock.sendall(text.encode('ascii') + b'\n')


class Server(PreforkServer):
    def __init__(self, **kw):
        PreforkServer.__init__(self, jobClass=LineJob, jobArgs=(self,), **kw)

    def _child_init(self):
        if options.get('fail_init'):
            raise RuntimeError('child start-up failed on purpose')


server = Server(**options['kw'])
if 'grace' in options:
    server.gracePeriod = options['grace']
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(('127.0.0.1', 0))
listener.listen(64)
print('PORT %%d' %% listener.getsockname()[1])
sys.stdout.flush()
before = [signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM,
                                         signal.SIGINT, signal.SIGUSR1)]
result = server.run(listener)
after = [signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM,
                                        signal.SIGINT, signal.SIGUSR1)]
print('RESULT %%r' %% (result,))
print('HANDLERS RESTORED %%r' %% (before == after,))
sys.stdout.flush()
''' % {'repo_root': REPO_ROOT}

START_TIMEOUT = 15.0
IO_TIMEOUT = 10.0


def parent_pid_of(pid):
    try:
        with open('/proc/%d/stat' % pid) as stat_file:
            stat = stat_file.read()
    except (IOError, OSError):
        return None
    # The command name may contain spaces and ')', so count from the last ')'.
    return int(stat[stat.rfind(')') + 2:].split()[1])


def child_pids(pid):
    """Return the sorted pids of the live (not zombie) children of ``pid``."""
    children = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and parent_pid_of(int(entry)) == pid:
            if not is_zombie(int(entry)):
                children.append(int(entry))
    return sorted(children)


def is_zombie(pid):
    try:
        with open('/proc/%d/stat' % pid) as stat_file:
            stat = stat_file.read()
    except (IOError, OSError):
        return False
    return stat[stat.rfind(')') + 2:].split()[0] == 'Z'


def process_exists(pid):
    return os.path.exists('/proc/%d' % pid)


def wait_for(predicate, timeout, interval=0.02):
    """Poll ``predicate`` until it returns a true value or ``timeout`` passes.

    Returns the last value.  Used only for states that have no event to
    wait on, such as a process count in /proc.
    """
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


class ServerProcess(object):
    """A PreforkServer running SERVER_SCRIPT in its own session."""

    def __init__(self, tmp_path, kw, grace=None, fail_init=False):
        import json
        script = os.path.join(str(tmp_path), 'prefork_server.py')
        with open(script, 'w') as script_file:
            script_file.write(SERVER_SCRIPT)
        options = {'kw': kw, 'fail_init': fail_init}
        if grace is not None:
            options['grace'] = grace
        self.log_path = str(tmp_path / 'server.log')
        self._log_file = open(self.log_path, 'wb')
        self.process = subprocess.Popen(
            [sys.executable, script, json.dumps(options)],
            stdout=subprocess.PIPE, stderr=self._log_file,
            preexec_fn=os.setsid)
        self.pid = self.process.pid
        self._stdout = b''
        line = self.read_line(START_TIMEOUT)
        assert line.startswith('PORT '), (line, self.log())
        self.port = int(line.split()[1])

    def read_line(self, timeout):
        """Return the next stdout line of the server, or '' on timeout or EOF."""
        deadline = time.time() + timeout
        fd = self.process.stdout.fileno()
        while b'\n' not in self._stdout:
            remaining = deadline - time.time()
            if remaining <= 0:
                return ''
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return ''
            chunk = os.read(fd, 4096)
            if not chunk:
                return ''
            self._stdout += chunk
        line, self._stdout = self._stdout.split(b'\n', 1)
        return line.decode('ascii')

    def children(self):
        return child_pids(self.pid)

    def wait_children(self, predicate, timeout=START_TIMEOUT):
        """Wait until ``predicate(child pids)`` is true; return the pids."""
        found = []

        def check():
            found[:] = self.children()
            return predicate(found)
        wait_for(check, timeout)
        return list(found)

    def wait_ready(self, pids, timeout=START_TIMEOUT):
        """Wait until every child in ``pids`` has logged that it is ready."""
        lines = ['child %d ready' % pid for pid in pids]
        return wait_for(lambda: all(line in self.log() for line in lines),
                        timeout)

    def send_signal(self, signum):
        os.kill(self.pid, signum)

    def wait_exit(self, timeout):
        """Return the exit status, or None if still running after ``timeout``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.process.poll()
            if status is not None:
                return status
            time.sleep(0.02)
        return self.process.poll()

    def log(self):
        with open(self.log_path, 'rb') as log_file:
            return log_file.read().decode('utf-8', 'replace')

    def close(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError as error:
                if error.errno != errno.ESRCH:
                    raise
            self.process.wait()
        self.process.stdout.close()
        self._log_file.close()


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(grace=None, fail_init=False, **kw):
        server = ServerProcess(tmp_path, kw, grace=grace, fail_init=fail_init)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


class Client(object):
    """One connection to the line job."""

    def __init__(self, port, command):
        self.sock = socket.create_connection(('127.0.0.1', port), IO_TIMEOUT)
        self.sock.sendall(command.encode('ascii') + b'\n')
        self._data = b''

    def read_line(self):
        while b'\n' not in self._data:
            chunk = self.sock.recv(100)
            if not chunk:
                break
            self._data += chunk
        line, _, self._data = self._data.partition(b'\n')
        return line.decode('ascii')

    def read_rest(self):
        data = self._data
        while True:
            chunk = self.sock.recv(100)
            if not chunk:
                return data
            data += chunk

    def close(self):
        self.sock.close()


def ask(port, command):
    """Send one command and return the whole reply, without its newline."""
    client = Client(port, command)
    try:
        return client.read_rest().decode('ascii').strip()
    finally:
        client.close()


def test_constructor_rejects_invalid_limits():
    with pytest.raises(ValueError):
        PreforkServer(minSpare=0)
    with pytest.raises(ValueError):
        PreforkServer(minSpare=3, maxSpare=2)
    with pytest.raises(ValueError):
        PreforkServer(maxRequests=-1)
    with pytest.raises(ValueError):
        PreforkServer(sockTimeout=-1)
    with pytest.raises(TypeError):
        PreforkServer(maxChildren='many')


def test_max_children_raised_to_max_spare():
    server = PreforkServer(minSpare=1, maxSpare=8, maxChildren=2)
    assert server._maxChildren == 8


def test_parent_state_before_run():
    server = PreforkServer()
    assert server.wakeup_fds == ()
    assert server.stop_requested is False
    assert server.served_connections == 0
    assert server.gracePeriod == 5.0


def test_messages_are_distinct_bytes():
    messages = (preforkserver.MSG_BUSY, preforkserver.MSG_IDLE,
                preforkserver.MSG_QUIT)
    for message in messages:
        assert isinstance(message, bytes)
        assert len(message) == 1
    assert len(set(messages)) == 3


def test_child_keeps_quit_message():
    parent_end, child_end = socket.socketpair()
    server = PreforkServer()
    server._become_child(child_end)
    try:
        assert server.wakeup_fds == (server._child_signals.wakeup_fd,
                                     child_end.fileno())
        assert server.stop_requested is False

        parent_end.sendall(preforkserver.MSG_QUIT)
        readable = select.select(server.wakeup_fds, [], [], IO_TIMEOUT)[0]

        assert readable == [child_end.fileno()]
        assert server.stop_requested is True
        assert server.stop_requested is True
    finally:
        server._child_signals.close()
        parent_end.close()
        child_end.close()


def test_child_stops_on_sigterm_not_sigusr1():
    parent_end, child_end = socket.socketpair()
    server = PreforkServer()
    server._become_child(child_end)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        readable = select.select(server.wakeup_fds, [], [], IO_TIMEOUT)[0]
        assert readable == [server._child_signals.wakeup_fd]
        assert server.stop_requested is False

        os.kill(os.getpid(), signal.SIGTERM)
        readable = select.select(server.wakeup_fds, [], [], IO_TIMEOUT)[0]
        assert readable == [server._child_signals.wakeup_fd]
        assert server.stop_requested is True
    finally:
        server._child_signals.close()
        parent_end.close()
        child_end.close()


def test_child_stops_when_parent_gone():
    parent_end, child_end = socket.socketpair()
    server = PreforkServer()
    server._become_child(child_end)
    try:
        parent_end.close()

        assert server.stop_requested is True
    finally:
        server._child_signals.close()
        child_end.close()


def test_reap_tolerates_unknown_process(caplog):
    caplog.set_level(logging.DEBUG, logger='flup.server.preforkserver')
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    server = PreforkServer()
    # Reaping has no readiness event to wait on, so poll until it happens.
    assert wait_for(lambda: not process_exists(pid) or is_zombie(pid),
                    IO_TIMEOUT)
    server._reap_children()

    assert not process_exists(pid)
    assert ('reaped process %d, which is not a child of this server '
            '(exit status 7)' % pid) in caplog.text


def test_run_without_job_class_raises():
    server = PreforkServer()
    listener = socket.socket()
    try:
        with pytest.raises(TypeError):
            server.run(listener)
    finally:
        listener.close()


def test_pool_stays_within_limits(start_server):
    server = start_server(minSpare=2, maxSpare=3, maxChildren=5)
    assert len(server.wait_children(lambda pids: len(pids) == 2)) == 2

    counts = []
    clients = [Client(server.port, 'sleep 0.5') for _ in range(8)]
    deadline = time.time() + 1.0
    while time.time() < deadline:
        counts.append(len(server.children()))
        time.sleep(0.02)
    replies = [client.read_rest() for client in clients]
    for client in clients:
        client.close()

    assert all(reply for reply in replies), replies
    assert max(counts) <= 5, counts
    assert max(counts) == 5, counts
    settled = server.wait_children(lambda pids: 2 <= len(pids) <= 3)
    assert 2 <= len(settled) <= 3, settled


def test_concurrent_slow_requests_get_more_children(start_server):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=4)
    server.wait_children(lambda pids: len(pids) == 1)
    started = time.time()
    clients = [Client(server.port, 'sleep 1') for _ in range(3)]
    replies = [client.read_rest().decode('ascii').split() for client in clients]
    elapsed = time.time() - started
    for client in clients:
        client.close()

    pids = set(reply[-1] for reply in replies)
    assert len(pids) == 3, replies
    assert elapsed < 1.8, elapsed


def test_max_requests_recycles_children(start_server):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=2,
                          maxRequests=2)
    served_by = [ask(server.port, 'pid') for _ in range(6)]

    assert len(set(served_by)) >= 3, served_by
    for pid in set(served_by):
        assert served_by.count(pid) <= 2, served_by
    assert 'exited unexpectedly' not in server.log()


def test_sigusr1_replaces_idle_children(start_server):
    server = start_server(minSpare=2, maxSpare=2, maxChildren=4)
    old = server.wait_children(lambda pids: len(pids) == 2)
    assert len(old) == 2

    server.send_signal(signal.SIGUSR1)
    new = server.wait_children(
        lambda pids: len(pids) == 2 and not set(pids) & set(old))

    assert not set(new) & set(old), (old, new)
    assert len(new) == 2
    assert int(ask(server.port, 'pid')) in new
    assert server.process.poll() is None
    assert 'SIGUSR1 received' in server.log()


def test_sigterm_kills_busy_child_after_grace(start_server):
    server = start_server(grace=1.0, minSpare=1, maxSpare=2, maxChildren=3)
    client = Client(server.port, 'sleep 60')
    busy_pid = int(client.read_line().split()[1])
    children = server.children()

    started = time.time()
    server.send_signal(signal.SIGTERM)
    status = server.wait_exit(1.0 + 4.0)
    elapsed = time.time() - started
    client.close()

    assert status == 0, server.log()
    assert 0.9 < elapsed < 4.0, elapsed
    assert server.read_line(IO_TIMEOUT) == 'RESULT False'
    assert server.read_line(IO_TIMEOUT) == 'HANDLERS RESTORED True'
    for pid in children + [busy_pid]:
        assert not process_exists(pid), pid
    assert 'child %d did not exit' % busy_pid in server.log()


def test_sigterm_wakes_waiting_job(start_server):
    server = start_server(grace=20.0, minSpare=1, maxSpare=2, maxChildren=3)
    client = Client(server.port, 'wait 60')
    busy_pid = int(client.read_line().split()[1])

    started = time.time()
    server.send_signal(signal.SIGTERM)
    reply = client.read_line()
    status = server.wait_exit(10.0)
    elapsed = time.time() - started
    client.close()

    assert reply == 'stopped %d' % busy_pid
    assert status == 0, server.log()
    assert elapsed < 5.0, elapsed
    assert server.read_line(IO_TIMEOUT) == 'RESULT False'
    assert not process_exists(busy_pid)
    assert 'did not exit' not in server.log()


def test_sigint_in_child_finishes_job(start_server):
    server = start_server(minSpare=1, maxSpare=2, maxChildren=3)
    client = Client(server.port, 'sleep 0.5')
    busy_pid = int(client.read_line().split()[1])

    os.kill(busy_pid, signal.SIGINT)
    reply = client.read_line()
    client.close()

    assert reply == str(busy_pid)
    assert wait_for(lambda: not process_exists(busy_pid), IO_TIMEOUT)
    assert ask(server.port, 'pid') != str(busy_pid)


def test_group_sigterm_lets_job_finish(start_server):
    server = start_server(grace=20.0, minSpare=1, maxSpare=2, maxChildren=3)
    client = Client(server.port, 'sleep 0.5')
    busy_pid = int(client.read_line().split()[1])

    os.killpg(server.pid, signal.SIGTERM)
    reply = client.read_line()
    status = server.wait_exit(10.0)
    client.close()

    assert reply == str(busy_pid)
    assert status == 0, server.log()
    assert server.read_line(IO_TIMEOUT) == 'RESULT False'
    assert 'did not exit' not in server.log()


def test_sighup_returns_true(start_server):
    server = start_server(minSpare=2, maxSpare=3, maxChildren=4)
    children = server.wait_children(lambda pids: len(pids) == 2)

    server.send_signal(signal.SIGHUP)
    status = server.wait_exit(10.0)

    assert status == 0, server.log()
    assert server.read_line(IO_TIMEOUT) == 'RESULT True'
    assert server.read_line(IO_TIMEOUT) == 'HANDLERS RESTORED True'
    for pid in children:
        assert not process_exists(pid), pid


def test_sigint_returns_false(start_server):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=2)
    server.wait_children(lambda pids: len(pids) == 1)

    server.send_signal(signal.SIGINT)
    status = server.wait_exit(10.0)

    assert status == 0, server.log()
    assert server.read_line(IO_TIMEOUT) == 'RESULT False'


def test_job_exception_keeps_child(start_server):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=1)
    first = ask(server.port, 'pid')
    failed = ask(server.port, 'raise')
    second = ask(server.port, 'pid')

    assert failed == ''
    assert second == first
    log = server.log()
    assert 'ERROR flup.server.preforkserver: job for the connection' in log
    assert 'RuntimeError: job failed on purpose' in log


def test_crashed_child_is_replaced(start_server):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=2)
    crashed = ask(server.port, 'crash').split()[1]
    line = 'child %s crashed (exit status 4)' % crashed
    assert wait_for(lambda: line in server.log(), IO_TIMEOUT), server.log()
    replacement = ask(server.port, 'pid')

    assert replacement != crashed


@pytest.mark.parametrize('sock_timeout, expected', [(0, 'None'), (2.5, '2.5')])
def test_sock_timeout_set_on_client(start_server, sock_timeout, expected):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=2,
                          sockTimeout=sock_timeout)

    assert ask(server.port, 'gettimeout') == expected


def test_killed_child_is_replaced(start_server):
    server = start_server(minSpare=2, maxSpare=2, maxChildren=3)
    old = server.wait_children(lambda pids: len(pids) == 2)
    # A child killed before it is ready counts as a failed start instead.
    assert server.wait_ready(old)
    victim = old[0]

    os.kill(victim, signal.SIGKILL)
    new = server.wait_children(
        lambda pids: len(pids) == 2 and victim not in pids)

    assert victim not in new
    assert len(new) == 2
    assert ask(server.port, 'pid') in [str(pid) for pid in new]
    assert ('child %d exited unexpectedly (killed by SIGKILL)' % victim
            in server.log())


def test_failing_child_start_backs_off(start_server):
    server = start_server(fail_init=True, minSpare=2, maxSpare=2,
                          maxChildren=4)
    # With delays of 0.5, 1 and 2 seconds between attempts, three seconds
    # leave room for about four start attempts.
    time.sleep(3.0)
    log = server.log()

    failures = log.count('failed to start')
    assert 1 <= failures <= 6, log
    assert server.process.poll() is None


def test_waiting_job_times_out_without_stop(start_server):
    server = start_server(minSpare=1, maxSpare=1, maxChildren=2)
    reply = ask(server.port, 'wait 0.2')

    assert reply.split()[-2] == 'timeout'


# Python 3.12 and later warn about any fork() while a second thread runs.
@pytest.mark.filterwarnings('ignore:This process .* is multi-threaded')
def test_run_outside_main_thread_serves(tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    result = []

    class PidJob(object):
        def __init__(self, sock, addr):
            self.sock = sock

        def run(self):
            self.sock.recv(100)
            self.sock.sendall(str(os.getpid()).encode('ascii'))

    server = PreforkServer(minSpare=1, maxSpare=1, maxChildren=2,
                           jobClass=PidJob)
    server.gracePeriod = 2.0
    thread = threading.Thread(target=lambda: result.append(server.run(listener)))
    thread.start()
    try:
        reply = ask(port, 'pid')
    finally:
        server.shutdown()
        thread.join(10.0)
        listener.close()

    assert reply.isdigit()
    assert int(reply) != os.getpid()
    assert not thread.is_alive()
    assert result == [False]
