"""Fixtures that start flup servers, web servers and upstream flup for the tests.

Servers run in subprocesses started by ``tests/support/serve.py``.  Pick
their interpreter with ``--server-python=PATH`` or the environment variable
``FLUP_TEST_PYTHON`` (default: the interpreter running pytest), and the flup
they import with ``FLUP_TEST_TARGET`` (default: this repository).
"""

from __future__ import absolute_import, print_function

import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)

# In-process tests import this repository's flup, never an installed copy.
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# These imports need REPO_ROOT on sys.path.
from tests.support import upstream, webservers  # noqa: E402
from tests.support.servers import ServerProcess, unix_socket_path  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        '--server-python',
        default=os.environ.get('FLUP_TEST_PYTHON') or sys.executable,
        help='interpreter that runs the flup servers under test '
        '(default: $FLUP_TEST_PYTHON, else the one running pytest)',
    )


@pytest.fixture(scope='session')
def server_python(request):
    """Path of the interpreter that runs serve.py."""
    return request.config.getoption('--server-python')


@pytest.fixture(scope='session')
def upstream_target(server_python):
    """Folder containing upstream flup for ``server_python``, installed from PyPI once."""
    return upstream.install_upstream(python=server_python)


@pytest.fixture
def workdir(tmp_path):
    """A per-test folder for configs, logs and sockets, as a str."""
    return str(tmp_path)


@pytest.fixture
def socket_path(workdir):
    """A Unix socket path in the test's folder, short enough for sun_path."""
    return unix_socket_path(workdir, 'test.sock')


LOG_TAIL_CHARS = 6000  # characters of each server log attached to a failed test


def _collect(request, item):
    """Stop ``item`` when the test ends; a failed test's report shows its log."""
    started = getattr(request.node, 'flup_started_servers', None)
    if started is None:
        started = request.node.flup_started_servers = []
    started.append(item)
    request.addfinalizer(item.stop)
    return item


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != 'call' or not report.failed:
        return
    for server in getattr(item, 'flup_started_servers', ()):
        log_text = (
            server.log_text()
            if hasattr(server, 'log_text')
            else server.error_log_text()
        )
        report.sections.append(('log of %r' % (server,), log_text[-LOG_TAIL_CHARS:]))


@pytest.fixture
def server_factory(request, workdir, server_python):
    """Start a ServerProcess: ``server_factory(model, app, bind='tcp', ...)``.

    Keywords are those of ServerProcess; ``python`` defaults to
    ``server_python``.  Each server is stopped when the test ends.
    """
    counter = [0]

    def start(model, app, **options):
        counter[0] += 1
        options.setdefault('python', server_python)
        options.setdefault('workdir', os.path.join(workdir, 'server%d' % counter[0]))
        if not os.path.isdir(options['workdir']):
            os.makedirs(options['workdir'])
        server = ServerProcess(model, app, **options)
        _collect(request, server)
        return server.start()

    return start


def _web_server_factory(request, workdir, server_class, prefix):
    counter = [0]

    def start(*args, **options):
        counter[0] += 1
        options.setdefault(
            'workdir', os.path.join(workdir, '%s%d' % (prefix, counter[0]))
        )
        server = server_class(*args, **options)
        _collect(request, server)
        return server.start()

    return start


@pytest.fixture
def nginx_factory(request, workdir):
    """Start nginx: ``nginx_factory(fastcgi='127.0.0.1:PORT' or scgi=..., ...)``."""
    return _web_server_factory(request, workdir, webservers.Nginx, 'nginx')


@pytest.fixture
def lighttpd_factory(request, workdir):
    """Start lighttpd: ``lighttpd_factory(fastcgi=... | scgi=... | ajp13=... | bin_path=[...])``."""
    return _web_server_factory(request, workdir, webservers.Lighttpd, 'lighttpd')


@pytest.fixture
def apache_factory(request, workdir):
    """Start Apache httpd: ``apache_factory('127.0.0.1:PORT', proxy='fcgi'|'ajp'|'scgi')``."""
    return _web_server_factory(request, workdir, webservers.ApacheHttpd, 'apache')


def backend_address(server):
    """Return the ``'HOST:PORT'`` or ``'unix:/path'`` spelling of a ServerProcess address."""
    return server.backend


@pytest.fixture
def backend_of():
    """The ``backend_address`` helper, for tests that wire a web server to a ServerProcess."""
    return backend_address
