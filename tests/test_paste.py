"""Paste Deploy runners: option strings, and servers started by PasteDeploy.

The ini tests need the real PasteDeploy package for the interpreter that
runs them (tox installs it).  ``egg:flup`` is found through metadata
written into a temporary folder from setup.py's ``entry_points``
argument, so the entry points under test are the ones setup.py declares.
"""

from __future__ import absolute_import

import ast
import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import flup
from flup.server import NoDefault, paste_factory
from tests import fcgi_wire
from tests import gateway_wire as wire
from tests.support import procinfo
from tests.support.servers import free_port, unix_socket_path

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

APP_MODULE = textwrap.dedent('''
    def application(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'paste says hi ' + environ['PATH_INFO'].encode('latin-1')]

    def make_app(global_conf, **local_conf):
        return application
''')


# -- Option strings ------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('true', True), (' Yes ', True), ('on', True), ('1', True), ('t', True),
    ('false', False), ('NO', False), ('off', False), ('0', False), ('f', False),
])
def test_asbool_words(text, expected):
    assert paste_factory.asbool(text) is expected
    assert paste_factory.asbool(u'%s' % text) is expected


def test_asbool_rejects_other_words_and_passes_objects():
    with pytest.raises(ValueError) as info:
        paste_factory.asbool('maybe')
    assert 'maybe' in str(info.value)
    assert paste_factory.asbool(0) is False
    assert paste_factory.asbool([1]) is True


def test_aslist():
    assert paste_factory.aslist('127.0.0.1  ::1') == ['127.0.0.1', '::1']
    assert paste_factory.aslist('a, b', sep=',') == ['a', 'b']
    assert paste_factory.aslist(['x']) == ['x']
    assert paste_factory.aslist(None) == []
    assert paste_factory.aslist(5) == [5]


def test_umask_string_is_octal():
    assert paste_factory._as_umask('022') == 0o022
    assert paste_factory._as_umask('0077') == 0o077
    assert paste_factory._as_umask(None) is None
    with pytest.raises(ValueError):
        paste_factory._as_umask('09')


def test_fcgi_address_rules():
    assert paste_factory._fcgi_address('127.0.0.1', '9000', None) == ('127.0.0.1', 9000)
    assert paste_factory._fcgi_address(None, None, '/tmp/x.sock') == '/tmp/x.sock'
    assert paste_factory._fcgi_address(None, None, None) is None
    with pytest.raises(ValueError):
        paste_factory._fcgi_address('127.0.0.1', None, None)
    with pytest.raises(ValueError):
        paste_factory._fcgi_address('127.0.0.1', '9000', '/tmp/x.sock')


def test_debug_follows_global_conf():
    assert paste_factory._debug(NoDefault, {'debug': 'true'}) is True
    assert paste_factory._debug(NoDefault, {}) is False
    assert paste_factory._debug('off', {'debug': 'true'}) is False


# -- Runners and PasteDeploy in server processes ---------------------------------------

def start_process(argv, workdir, env=None):
    environ = dict(os.environ)
    environ.pop('PYTHONPATH', None)
    environ.update(env or {})
    log_path = os.path.join(workdir, 'server.log')
    log_file = io.open(log_path, 'ab')
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log_file,
                                   stderr=log_file, env=environ, cwd=workdir,
                                   preexec_fn=os.setsid, close_fds=True)
    finally:
        log_file.close()
    process.stdin.close()
    process.log_path = log_path
    return process


def log_text(process):
    with io.open(process.log_path, 'rb') as log_file:
        return log_file.read().decode('utf-8', 'replace')


def wait_listening(process, address):
    def ready():
        if process.poll() is not None:
            raise AssertionError('server exited with %s:\n%s'
                                 % (process.returncode, log_text(process)))
        try:
            wire.connect(address, 1.0).close()
            return True
        except (OSError, IOError):
            return False

    assert procinfo.wait_until(ready, START_TIMEOUT, 0.05), log_text(process)


def stop(process):
    """SIGTERM the server; return its exit status (None if it hung)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    deadline = time.time() + STOP_TIMEOUT
    while process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    status = process.poll()
    for pid in procinfo.session_pids(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if status is None:
        process.wait()
    return status


@pytest.fixture
def app_dir(tmp_path):
    path = str(tmp_path)
    with io.open(os.path.join(path, 'paste_test_app.py'), 'wb') as module:
        module.write(APP_MODULE.encode('utf-8'))
    return path


def fcgi_get(address, path='/x'):
    with fcgi_wire.Client(address) as client:
        return client.request(fcgi_wire.cgi_params('GET', path))


RUNNER_SCRIPT = textwrap.dedent('''
    import logging, sys
    sys.path[:0] = [%(root)r, %(app_dir)r]
    logging.basicConfig(level=logging.INFO)
    from flup.server import paste_factory
    from paste_test_app import application
    options = dict(arg.split('=', 1) for arg in sys.argv[2:])
    result = getattr(paste_factory, sys.argv[1])(application, {}, **options)
    print('run returned %%r' %% (result,))
''')


def run_runner(app_dir, runner, **options):
    script = os.path.join(app_dir, 'runner.py')
    with io.open(script, 'wb') as handle:
        handle.write((RUNNER_SCRIPT % {'root': REPO_ROOT, 'app_dir': app_dir}).encode('utf-8'))
    argv = [sys.executable, script, runner] + ['%s=%s' % item for item in sorted(options.items())]
    return start_process(argv, app_dir)


def test_run_fcgi_thread_with_host_and_port(app_dir):
    port = free_port()
    process = run_runner(app_dir, 'run_fcgi_thread', host='127.0.0.1', port=str(port))
    try:
        wait_listening(process, ('127.0.0.1', port))
        response = fcgi_get(('127.0.0.1', port))
        assert response.status == 200
        assert response.body == b'paste says hi /x'
    finally:
        assert stop(process) == 0, log_text(process)
    assert 'run returned False' in log_text(process)


@pytest.mark.parametrize('runner', ['run_fcgi_thread', 'run_fcgi_fork'])
def test_run_fcgi_socket_umask_is_octal(app_dir, runner):
    path = unix_socket_path(app_dir, 'paste.sock')
    process = run_runner(app_dir, runner, socket=path, umask='022', multiplexed='false',
                         debug='no')
    try:
        wait_listening(process, path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
        assert fcgi_get(path).body == b'paste says hi /x'
    finally:
        assert stop(process) == 0, log_text(process)


def setup_py_entry_points():
    """Return the ``entry_points`` argument of setup.py, read without running it."""
    with io.open(os.path.join(REPO_ROOT, 'setup.py'), 'rb') as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup':
            for keyword in node.keywords:
                if keyword.arg == 'entry_points':
                    return ast.literal_eval(keyword.value)
    raise AssertionError('setup.py has no setup(entry_points=...)')


@pytest.fixture(scope='module')
def egg_info_dir(tmp_path_factory):
    """A folder with ``flup.egg-info`` holding setup.py's entry points.

    Written directly, since setuptools is missing on some supported
    Pythons; both pkg_resources and importlib.metadata read this layout.
    """
    path = str(tmp_path_factory.mktemp('egg-info'))
    info = os.path.join(path, 'flup.egg-info')
    os.mkdir(info)
    with io.open(os.path.join(info, 'PKG-INFO'), 'wb') as handle:
        handle.write(('Metadata-Version: 1.1\nName: flup\nVersion: %s\n'
                      % flup.__version__).encode('ascii'))
    lines = []
    for group, entries in sorted(setup_py_entry_points().items()):
        lines.append('[%s]' % group)
        lines.extend(entries)
        lines.append('')
    with io.open(os.path.join(info, 'entry_points.txt'), 'wb') as handle:
        handle.write('\n'.join(lines).encode('ascii'))
    return path


LOADSERVER_SCRIPT = textwrap.dedent('''
    import logging, sys
    sys.path[:0] = [%(egg_dir)r, %(root)r, %(app_dir)r]
    logging.basicConfig(level=logging.INFO)
    import flup
    if not flup.__file__.startswith(%(root)r):
        sys.exit('flup imported from %%s, not the repository' %% flup.__file__)
    from paste.deploy import loadapp, loadserver
    config = 'config:' + sys.argv[1]
    server = loadserver(config)
    app = loadapp(config)
    result = server(app)
    print('server returned %%r' %% (result,))
''')

INI = textwrap.dedent('''
    [DEFAULT]
    debug = false

    [app:main]
    paste.app_factory = paste_test_app:make_app

    [server:main]
    use = egg:flup#%(runner)s
    host = 127.0.0.1
    port = %(port)d
    %(extra)s
''')


def scgi_get(address):
    raw = wire.scgi_exchange(address, wire.cgi_params('GET', '/s'))
    return raw.split(b'\r\n\r\n', 1)[1]


def ajp_get(address):
    sock = wire.connect(address)
    try:
        sock.sendall(wire.ajp_forward_request(uri='/a'))
        return wire.ajp_read_response(sock).body
    finally:
        sock.close()


@pytest.mark.parametrize('runner, extra, get, path', [
    ('fcgi', '', lambda a: fcgi_get(a).body, b'/x'),
    ('fcgi_thread', 'maxThreads = 8', lambda a: fcgi_get(a).body, b'/x'),
    ('fcgi_fork', 'maxChildren = 4', lambda a: fcgi_get(a).body, b'/x'),
    ('scgi_thread', 'allowedServers = 127.0.0.1', scgi_get, b'/s'),
    ('scgi_fork', 'maxSpare = 2', scgi_get, b'/s'),
    ('ajp_thread', 'scriptName =', ajp_get, b'/a'),
    ('ajp_fork', '', ajp_get, b'/a'),
])
def test_pastedeploy_loadserver_starts_runner(app_dir, egg_info_dir, runner, extra, get, path):
    port = free_port()
    ini = os.path.join(app_dir, 'server.ini')
    with io.open(ini, 'wb') as handle:
        handle.write((INI % {'runner': runner, 'port': port, 'extra': extra}).encode('utf-8'))
    script = os.path.join(app_dir, 'loadserver.py')
    with io.open(script, 'wb') as handle:
        handle.write((LOADSERVER_SCRIPT % {'egg_dir': egg_info_dir, 'root': REPO_ROOT,
                                           'app_dir': app_dir}).encode('utf-8'))
    process = start_process([sys.executable, script, ini], app_dir)
    try:
        wait_listening(process, ('127.0.0.1', port))
        assert get(('127.0.0.1', port)) == b'paste says hi ' + path
    finally:
        assert stop(process) == 0, log_text(process)
    assert 'server returned False' in log_text(process)
