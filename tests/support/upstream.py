"""Install upstream flup from PyPI beside the project, for side-by-side tests.

Upstream is installed with ``pip install --target`` into
``<repo>/.upstream/flup-VERSION`` (ignored by git) once and reused.  The
folder is only ever given to serve.py as ``FLUP_TEST_TARGET``, so upstream
never shares a ``sys.path`` with the project.  Upstream 1.0.3 requires
Python 3, so Python 2.7 servers get 1.0.2.
"""

from __future__ import absolute_import, print_function

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile

from .webservers import CommandTimeout, run_command

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPSTREAM_ROOT = os.path.join(REPO_ROOT, '.upstream')

PY3_VERSION = '1.0.3'
PY2_VERSION = '1.0.2'

INSTALL_TIMEOUT = 300  # seconds for one pip run


def python_major(python):
    """Return the major version of the interpreter ``python``."""
    if python in (None, sys.executable):
        return sys.version_info[0]
    output = subprocess.check_output(
        [python, '-c', 'import sys; print(sys.version_info[0])']
    )
    return int(output.decode('ascii').strip())


def upstream_version(python=None):
    """Return the upstream release that runs on ``python`` (default: this one)."""
    return PY2_VERSION if python_major(python) == 2 else PY3_VERSION


def install_upstream(version=None, python=None):
    """Install upstream flup ``version`` once and return the folder that contains its ``flup``.

    ``python`` runs pip (default: this interpreter).  Concurrent callers,
    such as tox environments run in parallel, wait on a lock file, and the
    install goes to a temporary folder that is renamed into place, so a
    crash never leaves a half-installed target.  Raises RuntimeError when pip
    fails or runs past INSTALL_TIMEOUT.
    """
    version = version or upstream_version(python)
    target = os.path.join(UPSTREAM_ROOT, 'flup-%s' % version)
    if os.path.isfile(os.path.join(target, 'flup', 'server', 'fcgi.py')):
        return target
    if not os.path.isdir(UPSTREAM_ROOT):
        try:
            os.makedirs(UPSTREAM_ROOT)
        except OSError:
            if not os.path.isdir(UPSTREAM_ROOT):
                raise
    with open(os.path.join(UPSTREAM_ROOT, '.lock'), 'w') as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if not os.path.isfile(os.path.join(target, 'flup', 'server', 'fcgi.py')):
                _pip_install(version, python or sys.executable, target)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return target


def _pip_install(version, python, target):
    staging = tempfile.mkdtemp(prefix='flup-%s-' % version, dir=UPSTREAM_ROOT)
    argv = [
        python,
        '-m',
        'pip',
        'install',
        '--disable-pip-version-check',
        '--no-deps',
        '--no-compile',
        '--target',
        staging,
        'flup==%s' % version,
    ]
    try:
        returncode, stdout, stderr = run_command(
            argv, env=dict(os.environ), timeout=INSTALL_TIMEOUT
        )
    except CommandTimeout:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            'pip install flup==%s timed out after %d s' % (version, INSTALL_TIMEOUT)
        )
    if returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            '%s failed with status %d:\n%s%s'
            % (
                ' '.join(argv),
                returncode,
                stdout.decode('utf-8', 'replace'),
                stderr.decode('utf-8', 'replace'),
            )
        )
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.rename(staging, target)
