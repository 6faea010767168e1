"""Run ``serve.py`` in a subprocess and stop it, for tests of flup servers.

``ServerProcess`` picks the listening address, waits until the server
accepts connections and keeps its stdout and stderr in a log file.  On exit
it sends SIGTERM, then SIGKILL to every process of its session (prefork
children included), and records whether the server exited by itself.
"""

from __future__ import absolute_import, print_function

import ctypes
import ctypes.util
import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from . import procinfo

SUPPORT_DIR = os.path.dirname(os.path.abspath(__file__))
SERVE_SCRIPT = os.path.join(SUPPORT_DIR, 'serve.py')
REPO_ROOT = os.path.dirname(os.path.dirname(SUPPORT_DIR))

BIND_KINDS = ('tcp', 'tcp6', 'unix', 'fd0', 'fd0-unix', 'spawn-fcgi', 'spawn-fcgi-unix')

SPAWN_FCGI = '/usr/bin/spawn-fcgi'

START_ATTEMPTS = 3  # ports tried when the chosen one was taken meanwhile

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_PATH = 107


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Loaded once here, because loading a library between fork and exec is unsafe.
_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)


def session_preexec(death_signal):
    """Return a ``preexec_fn`` that starts a new session and sets the parent-death signal.

    The child gets ``death_signal`` when the thread that started it exits,
    so a test run killed from outside does not leave servers behind.  Start
    long-lived servers from a thread that lives as long as they should.
    """

    def preexec():
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)

    return preexec


def free_port(host='127.0.0.1'):
    """Return a TCP port that was free on ``host`` a moment ago.

    The port is found by binding to port 0 and closing the socket, so
    another process can take it before the caller binds it.  Callers that
    cannot tolerate that retry with a new port.
    """
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.bind((host, 0))
        return probe.getsockname()[1]
    finally:
        probe.close()


def unix_socket_path(directory, name):
    """Return ``directory/name``, or a path in a new short folder under /tmp
    when that one is longer than a Unix socket address allows."""
    path = os.path.join(directory, name)
    if len(path.encode('utf-8')) <= MAX_UNIX_PATH:
        return path
    short_dir = tempfile.mkdtemp(prefix='flup-sock-')
    return os.path.join(short_dir, name)


def connect(address, timeout=5.0):
    """Open a stream socket to ``address``: a Unix path, (host, port) or an IPv6 4-tuple."""
    if isinstance(address, str):
        family = socket.AF_UNIX
    elif len(address) > 2:
        family = socket.AF_INET6
    else:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except Exception:
        sock.close()
        raise
    return sock


def format_bind(address):
    """Return the ``serve.py --bind`` spelling of ``address``."""
    if isinstance(address, str):
        return 'unix:' + address
    if len(address) > 2:
        return '[%s]:%d' % (address[0], address[1])
    return '%s:%d' % address


def kill_session(sid, timeout=5.0):
    """SIGKILL every live process of session ``sid``; return True once none is left.

    Waits up to ``timeout`` seconds, because a killed process stays in
    /proc until the kernel has torn it down.
    """
    for _ in range(3):
        pids = procinfo.session_pids(sid)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
        if procinfo.wait_until(lambda: not procinfo.session_pids(sid), timeout / 3):
            return True
    return not procinfo.session_pids(sid)


class ServerStartError(RuntimeError):
    """serve.py exited or did not accept connections in time."""


class ServerProcess(object):
    """A flup server started by ``serve.py`` in a new session.

    ``model`` is a serve.py model: threaded, prefork, single, or an SCGI or
    AJP one such as scgi-threaded.  ``app`` is a name from ``apps.py``.
    ``bind`` is one of tcp, tcp6, unix, fd0 and fd0-unix.  The fd0 kinds
    make the listening socket here (TCP or Unix) and give it to the server
    as standard input, as spawn-fcgi does.  The spawn-fcgi kinds run
    Debian's ``spawn-fcgi -n``, which binds a TCP or Unix socket and execs
    serve.py with it as standard input.  ``kw`` is a dict of extra
    WSGIServer keywords.  ``target`` is the folder that contains the flup
    package to run.  When it is None, FLUP_TEST_TARGET passes through from
    this environment, and serve.py falls back to the repository root.
    ``python`` is the interpreter, by default ``sys.executable``.

    Attributes after ``start()``: ``address`` ((host, port), an IPv6
    4-tuple or a Unix path), ``pid``, ``log_path``.  After ``stop()``:
    ``returncode``, ``exited_in_time`` (exited by itself after SIGTERM
    within the timeout), ``exited_cleanly`` (the same, with status 0) and
    ``leftover_pids`` (other processes of the session still alive, then
    killed).
    """

    def __init__(
        self,
        model,
        app,
        bind='tcp',
        multiplexed=False,
        kw=None,
        target=None,
        python=None,
        workdir=None,
        env=None,
        ready_timeout=15.0,
    ):
        if bind not in BIND_KINDS:
            raise ValueError(
                'invalid bind %r: expected one of %s' % (bind, ', '.join(BIND_KINDS))
            )
        self.model = model
        self.app = app
        self.bind = bind
        self.multiplexed = multiplexed
        self.kw = dict(kw or {})
        self.target = target
        self.python = python or sys.executable
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix='flup-server-')
        if not os.path.isdir(self.workdir):
            os.makedirs(self.workdir)
        self.log_path = os.path.join(self.workdir, 'server-%s-%s.log' % (model, app))
        self.address = None
        self.process = None
        self.returncode = None
        self.exited_cleanly = None
        self.exited_in_time = None
        self.leftover_pids = []
        self._listen_socket = None

    # -- start -------------------------------------------------------------

    @property
    def pid(self):
        return self.process.pid if self.process else None

    @property
    def backend(self):
        """The address as web server wrappers take it: ``'HOST:PORT'``, ``'[::1]:PORT'`` or ``'unix:/path'``."""
        if isinstance(self.address, str):
            return 'unix:' + self.address
        return format_bind(self.address)

    def command(self, bind_spec):
        argv = [
            self.python,
            SERVE_SCRIPT,
            '--model',
            self.model,
            '--bind',
            bind_spec,
            '--app',
            self.app,
        ]
        if self.multiplexed:
            argv.append('--multiplexed')
        for name in sorted(self.kw):
            argv.extend(['--kw', '%s=%s' % (name, self.kw[name])])
        return argv

    def _spawn_fcgi_command(self):
        """Return the spawn-fcgi command line; with -n it execs serve.py in its own process."""
        if not os.access(SPAWN_FCGI, os.X_OK):
            raise ServerStartError(
                '%s not found; install the Debian package spawn-fcgi' % SPAWN_FCGI
            )
        if isinstance(self.address, str):
            where = ['-s', self.address]
        else:
            where = ['-a', self.address[0], '-p', str(self.address[1])]
        return [SPAWN_FCGI, '-n'] + where + ['--'] + self.command('fd0')

    def environment(self):
        environ = dict(os.environ)
        # PYTHONPATH could put a second flup ahead of the target.
        environ.pop('PYTHONPATH', None)
        if self.target is not None:
            environ['FLUP_TEST_TARGET'] = str(self.target)
        environ.update(self.extra_env)
        return environ

    def _choose_address(self):
        if self.bind in ('tcp', 'spawn-fcgi'):
            return ('127.0.0.1', free_port('127.0.0.1'))
        if self.bind == 'tcp6':
            return ('::1', free_port('::1'), 0, 0)
        if self.bind in ('unix', 'spawn-fcgi-unix'):
            return unix_socket_path(self.workdir, 'fcgi.sock')
        return None

    def _make_listen_socket(self):
        if self.bind == 'fd0-unix':
            path = unix_socket_path(self.workdir, 'fcgi-fd0.sock')
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(('127.0.0.1', 0))
        sock.listen(128)
        return sock

    def start(self):
        """Start serve.py and wait until it accepts a connection; return self.

        A TCP port taken by another process between ``free_port()`` and the
        server's bind is replaced by a new one, up to START_ATTEMPTS times.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            self._spawn()
            try:
                self.wait_ready()
                return self
            except ServerStartError:
                port_taken = 'Address already in use' in self.log_text()
                tcp = self.bind in ('tcp', 'tcp6', 'spawn-fcgi')
                if not (port_taken and tcp and attempt < START_ATTEMPTS):
                    raise

    def _spawn(self):
        log_file = io.open(self.log_path, 'ab')
        try:
            stdin = subprocess.PIPE
            if self.bind.startswith('fd0'):
                self._listen_socket = self._make_listen_socket()
                self.address = self._listen_socket.getsockname()
                stdin = self._listen_socket.fileno()
                bind_spec = 'fd0'
            else:
                self.address = self._choose_address()
                bind_spec = format_bind(self.address)
            argv = self.command(bind_spec)
            if self.bind.startswith('spawn-fcgi'):
                argv = self._spawn_fcgi_command()
            # A new session holds the server and its prefork children for stop().
            self.process = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=log_file,
                stderr=log_file,
                env=self.environment(),
                cwd=self.workdir,
                preexec_fn=session_preexec(signal.SIGKILL),
                close_fds=True,
            )
        finally:
            log_file.close()
            if self._listen_socket is not None:
                # The child has its own copy as standard input.
                self._listen_socket.close()
                self._listen_socket = None
        if self.process.stdin is not None:
            self.process.stdin.close()

    def _is_listening(self):
        if self.bind not in ('tcp', 'tcp6', 'spawn-fcgi'):
            return True  # The socket was made here or sits in a private folder.
        # Another process may hold the port, so check that serve.py owns it.
        return self.address[1] in procinfo.listening_ports(self.process.pid)

    def wait_ready(self):
        """Connect until the server accepts or ``ready_timeout`` passes.

        For TCP, the listening socket must also belong to serve.py.  The
        probe connection is closed at once without a request.
        """
        deadline = time.time() + self.ready_timeout
        last_error = None
        attempts = int(self.ready_timeout / 0.05) + 1
        for _ in range(attempts):
            if self.process.poll() is not None:
                raise ServerStartError(
                    'serve.py exited with status %s before accepting connections; log:\n%s'
                    % (self.process.returncode, self.log_text())
                )
            try:
                probe = connect(self.address, timeout=1.0)
            except (socket.error, OSError) as exc:
                last_error = exc
            else:
                probe.close()
                if self._is_listening():
                    return
                last_error = 'the port accepts, but serve.py does not listen on it'
            if time.time() >= deadline:
                break
            time.sleep(0.05)
        self.stop(timeout=2.0)
        raise ServerStartError(
            'serve.py did not accept connections on %r within %.1f s (last error: %s); log:\n%s'
            % (self.address, self.ready_timeout, last_error, self.log_text())
        )

    # -- inspect -----------------------------------------------------------

    def log_text(self):
        """Return the server's stdout and stderr so far, decoded as UTF-8."""
        try:
            with io.open(self.log_path, 'rb') as log_file:
                return log_file.read().decode('utf-8', 'replace')
        except IOError:
            return u''

    def wait_for_log(self, text, timeout=10.0):
        """Wait until ``text`` appears in the log; return whether it did."""
        deadline = time.time() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if text in self.log_text():
                return True
            if time.time() >= deadline:
                break
            time.sleep(0.05)
        return text in self.log_text()

    def connect(self, timeout=5.0):
        """Open a new connection to the server's listening address."""
        return connect(self.address, timeout=timeout)

    def send_signal(self, signum):
        self.process.send_signal(signum)

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    # -- stop --------------------------------------------------------------

    def _wait_exit(self, timeout):
        deadline = time.time() + timeout
        for _ in range(int(timeout / 0.02) + 1):
            if self.process.poll() is not None:
                return True
            if time.time() >= deadline:
                break
            time.sleep(0.02)
        return self.process.poll() is not None

    def _kill_session(self):
        """SIGKILL every process still alive in the server's session and wait until they are gone."""
        kill_session(self.process.pid)

    def stop(self, timeout=10.0):
        """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL the session.

        Returns True if serve.py exited by itself in time.  Processes of its
        session still alive after that (prefork children left behind) are
        killed too, and their pids stored in ``leftover_pids``.
        """
        if self.process is None:
            return False
        if self.returncode is not None:
            return self.exited_in_time
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
            except OSError:  # It exited between poll() and the signal.
                pass
        self.exited_in_time = self._wait_exit(timeout)
        self.leftover_pids = [
            pid
            for pid in procinfo.session_pids(self.process.pid)
            if pid != self.process.pid
        ]
        self._kill_session()
        self.process.wait()
        self.returncode = self.process.returncode
        self.exited_cleanly = self.exited_in_time and self.returncode == 0
        if self._own_workdir and self.exited_in_time:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.exited_in_time

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc_value, traceback):
        self.stop()
        return False

    def __repr__(self):
        return '<ServerProcess %s %s bind=%s address=%r pid=%s>' % (
            self.model,
            self.app,
            self.bind,
            self.address,
            self.pid,
        )
