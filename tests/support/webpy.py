"""Install web.py from PyPI and start the test web.py app under this project's flup.

web.py goes into ``<repo>/.webpy/web.py-VERSION-pyX.Y`` (ignored by git)
with ``pip install --target``, once per interpreter version, together with
its dependencies, because they differ between Python versions.  That folder
never contains a ``flup``: the app's ``PYTHONPATH`` puts the repository root
first, so web.py's ``import flup.server.fcgi`` loads this project.

Which web.py runs on which interpreter:

- Python 2.7: web.py 0.39, a release for Python 2 only.
- Python 3.10 and later: web.py 0.76, which declares Requires-Python
  ``>=3.10,<3.15``.
- Python 3.6 to 3.9: web.py 0.62, the last release that installs there.
"""

from __future__ import absolute_import, print_function

import fcntl
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import procinfo
from .servers import REPO_ROOT, connect, free_port, kill_session

WEBPY_ROOT = os.path.join(REPO_ROOT, '.webpy')
APP_DIR = os.path.join(REPO_ROOT, 'tests', 'webpy_app')
APP_SCRIPT = os.path.join(APP_DIR, 'app.py')
SPAWN_FCGI = '/usr/bin/spawn-fcgi'

INSTALL_TIMEOUT = 300  # seconds for one pip run
READY_TIMEOUT = 20.0  # seconds for the app to accept a connection
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL


def python_version(python):
    """Return ``(major, minor)`` of the interpreter ``python``."""
    if python in (None, sys.executable):
        return tuple(sys.version_info[:2])
    output = subprocess.check_output(
        [python, '-c', 'import sys; print("%d %d" % sys.version_info[:2])'])
    major, minor = output.decode('ascii').split()
    return int(major), int(minor)


def webpy_version(python=None):
    """Return the web.py release the tests run on ``python``, or None if there is none."""
    version = python_version(python)
    if version < (3, 0):
        return '0.39'
    if (3, 10) <= version < (3, 15):
        return '0.76'
    if (3, 6) <= version < (3, 10):
        # 0.76 declares Requires-Python >=3.10; 0.62 is the last release
        # before that.  It needs a pip newer than Python 3.6's own 18.1,
        # which tox's virtual environments have.
        return '0.62'
    return None


def install_webpy(python=None):
    """Install web.py for ``python`` once and return the folder that contains ``web``.

    Concurrent callers wait on a lock file, and pip installs into a
    temporary folder that is renamed into place, so a crash never leaves a
    half-installed target.  Raises RuntimeError when pip fails, runs past
    INSTALL_TIMEOUT, or installs a ``flup`` (which would hide this project's).
    """
    python = python or sys.executable
    major, minor = python_version(python)
    version = webpy_version(python)
    if version is None:
        raise ValueError('no web.py release is tested on Python %d.%d: the tests use 0.39 on 2.7, '
                         '0.62 on 3.6 to 3.9 and 0.76 on 3.10 to 3.14' % (major, minor))
    target = os.path.join(WEBPY_ROOT, 'web.py-%s-py%d.%d' % (version, major, minor))
    marker = os.path.join(target, 'web', 'wsgi.py')
    if os.path.isfile(marker):
        return target
    if not os.path.isdir(WEBPY_ROOT):
        try:
            os.makedirs(WEBPY_ROOT)
        except OSError:
            if not os.path.isdir(WEBPY_ROOT):
                raise
    with open(os.path.join(WEBPY_ROOT, '.lock'), 'w') as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if not os.path.isfile(marker):
                _pip_install(python, version, target)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return target


def _pip_install(python, version, target):
    staging = tempfile.mkdtemp(prefix='web.py-%s-' % version, dir=WEBPY_ROOT)
    argv = [python, '-m', 'pip', 'install', '--disable-pip-version-check', '--no-compile',
            '--target', staging, 'web.py==%s' % version]
    # Imported here so this module stays importable without the web server helpers.
    from .webservers import CommandTimeout, run_command
    environ = dict(os.environ)
    environ.pop('PYTHONPATH', None)
    try:
        returncode, stdout, stderr = run_command(argv, env=environ, timeout=INSTALL_TIMEOUT)
    except CommandTimeout:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError('pip install web.py==%s timed out after %d s' % (version, INSTALL_TIMEOUT))
    if returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError('%s failed with status %d:\n%s%s'
                           % (' '.join(argv), returncode, stdout.decode('utf-8', 'replace'),
                              stderr.decode('utf-8', 'replace')))
    if os.path.exists(os.path.join(staging, 'flup')):
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError('pip install web.py==%s also installed a flup package; the tests '
                           'must import this project\'s flup' % version)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.rename(staging, target)


def app_environment(webpy_target, extra=None):
    """Return the environment for the web.py app: this flup first, then web.py.

    FLUP_MULTIPLEXED, SERVER_SOFTWARE, PHP_FCGI_CHILDREN, FCGI_FORCE_CGI and
    REAL_SCRIPT_NAME change what web.py and flup do, so they are removed
    from the inherited environment.  ``extra`` sets them where a test wants
    them.
    """
    environ = dict(os.environ)
    for name in ('FLUP_MULTIPLEXED', 'SERVER_SOFTWARE', 'PHP_FCGI_CHILDREN', 'FCGI_FORCE_CGI',
                 'REAL_SCRIPT_NAME'):
        environ.pop(name, None)
    environ['PYTHONPATH'] = os.pathsep.join([REPO_ROOT, webpy_target])
    environ['PYTHONDONTWRITEBYTECODE'] = '1'
    environ.update(extra or {})
    return environ


class AppStartError(RuntimeError):
    """The web.py app exited or did not accept connections in time."""


class WebpyApp(object):
    """The test web.py app in its own session, started one of the ways web.py is deployed.

    ``mode`` is one of:

    - ``'argv'``: ``python app.py fastcgi HOST:PORT``, so web.py binds the
      TCP address itself;
    - ``'spawn-fcgi'``: ``spawn-fcgi`` creates the listening socket
      (``socket_kind`` ``'tcp'`` or ``'unix'``) and runs
      ``python app.py fastcgi`` with it as descriptor 0.

    lighttpd's bin-path, the third way, is started by
    ``webservers.Lighttpd(bin_path=...)``; see ``bin_path_argv``.
    ``env`` adds variables (FLUP_MULTIPLEXED, say) to the app's environment.

    Attributes after ``start()``: ``address`` ((host, port) or a Unix
    path), ``pid`` (the Python process), ``log_path``.
    """

    def __init__(self, python, webpy_target, workdir, mode='argv', socket_kind='tcp', env=None):
        if mode not in ('argv', 'spawn-fcgi'):
            raise ValueError('invalid mode %r: expected argv or spawn-fcgi' % (mode,))
        if socket_kind not in ('tcp', 'unix'):
            raise ValueError('invalid socket_kind %r: expected tcp or unix' % (socket_kind,))
        self.python = python
        self.webpy_target = webpy_target
        self.workdir = workdir
        self.mode = mode
        self.socket_kind = socket_kind
        self.extra_env = dict(env or {})
        self.log_path = os.path.join(workdir, 'webpy-app.log')
        self.address = None
        self.pid = None
        self.session_id = None
        self._process = None

    def command(self):
        if self.mode == 'argv':
            host, port = self.address
            return [self.python, APP_SCRIPT, 'fastcgi', '%s:%d' % (host, port)]
        if not os.access(SPAWN_FCGI, os.X_OK):
            raise AppStartError('%s not found; install the Debian package spawn-fcgi '
                                '(apt-get install -y spawn-fcgi)' % SPAWN_FCGI)
        argv = [SPAWN_FCGI, '-n']
        if self.socket_kind == 'unix':
            argv += ['-s', self.address, '-M', '0600']
        else:
            argv += ['-a', self.address[0], '-p', str(self.address[1])]
        return argv + ['--', self.python, APP_SCRIPT, 'fastcgi']

    def start(self):
        """Start the app and wait until it accepts a connection; return self."""
        if self.socket_kind == 'unix':
            from .servers import unix_socket_path
            self.address = unix_socket_path(self.workdir, 'webpy.sock')
        else:
            self.address = ('127.0.0.1', free_port())
        log_file = io.open(self.log_path, 'ab')
        try:
            # spawn-fcgi -n execs the app in its own process, so the pid is the app's.
            self._process = subprocess.Popen(
                self.command(), stdin=open(os.devnull, 'rb'), stdout=log_file, stderr=log_file,
                cwd=self.workdir, env=app_environment(self.webpy_target, self.extra_env),
                preexec_fn=os.setsid, close_fds=True)
        finally:
            log_file.close()
        self.pid = self.session_id = self._process.pid
        self._wait_ready()
        return self

    def _wait_ready(self):
        attempts = int(READY_TIMEOUT / 0.05) + 1
        last_error = None
        for _ in range(attempts):
            if self._process.poll() is not None:
                raise AppStartError('the web.py app exited with status %s before accepting '
                                    'connections; log:\n%s' % (self._process.returncode, self.log_text()))
            try:
                probe = connect(self.address, timeout=1.0)
            except (OSError, IOError) as error:
                last_error = error
            else:
                probe.close()
                return
            time.sleep(0.05)
        self.stop()
        raise AppStartError('the web.py app did not accept connections on %r within %.0f s '
                            '(last error: %s); log:\n%s'
                            % (self.address, READY_TIMEOUT, last_error, self.log_text()))

    def log_text(self):
        """Return the app's stdout and stderr so far, decoded as UTF-8."""
        try:
            with io.open(self.log_path, 'rb') as log_file:
                return log_file.read().decode('utf-8', 'replace')
        except IOError:
            return u''

    def stop(self):
        """Send SIGTERM, wait up to STOP_TIMEOUT, then kill the session; return True if it exited."""
        if self._process is None:
            return False
        if self._process.poll() is None:
            try:
                self._process.terminate()
            except OSError:
                pass
        exited = bool(procinfo.wait_until(lambda: self._process.poll() is not None, STOP_TIMEOUT))
        kill_session(self.session_id)
        self._process.wait()
        return exited

    def __repr__(self):
        return '<WebpyApp %s address=%r pid=%s>' % (self.mode, self.address, self.pid)


def interpreter_path(python):
    """Return the absolute path of the interpreter ``python`` (a name on PATH or a shim)."""
    output = subprocess.check_output([python, '-c', 'import sys; print(sys.executable)'])
    return output.decode('utf-8').strip()


def bin_path_argv(python):
    """Return the lighttpd ``bin-path`` argv that runs the test app on descriptor 0.

    lighttpd runs ``bin-path`` without a PATH search, so the interpreter
    path is made absolute.
    """
    return [interpreter_path(python), APP_SCRIPT, 'fastcgi']
