"""web.py from PyPI served by this project's flup behind real nginx and lighttpd.

web.py's ``runfcgi`` builds ``flup.server.fcgi.WSGIServer(func,
multiplexed=True, bindAddress=addr, debug=False)``.  These tests install
web.py (0.39 on Python 2.7, 0.62 on 3.6 to 3.9, 0.76 on 3.10 and later;
see ``tests/support/webpy.py``) and start ``tests/webpy_app/app.py`` the ways
web.py is deployed:

- ``argv``: ``python app.py fastcgi 127.0.0.1:PORT``;
- ``spawn-fcgi``: spawn-fcgi makes the listening socket (TCP or Unix) and
  runs ``python app.py fastcgi`` with it as descriptor 0;
- ``bin-path``: lighttpd's mod_fastcgi starts ``python app.py`` with a
  Unix socket as descriptor 0, and web.py recognises FastCGI by the
  PHP_FCGI_CHILDREN variable that lighttpd sets.

A missing web server, spawn-fcgi or web.py download fails the test.
"""

from __future__ import absolute_import, print_function

import hashlib
import io
import grp
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import threading

import pytest

from tests import fcgi_wire
from tests.support import procinfo, webpy, webservers
from tests.support.servers import REPO_ROOT, free_port, kill_session
from tests.support.webservers import abort_http, http_get, http_post, run_command

pytestmark = pytest.mark.e2e

SECRET_MARKER = 'webpy-test-secret-7f3a'  # the text app.py puts into its exceptions
ACCEPTED_WORDS = ('1', '0', 'true', 'false', 'yes', 'no', 'on', 'off')
CAPABILITY_NAMES = ['FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS']

DEPLOYMENTS = (
    'nginx-argv',
    'nginx-spawn-fcgi-unix',
    'lighttpd-argv',
    'lighttpd-spawn-fcgi-tcp',
    'lighttpd-bin-path',
)

ABORTED_CLIENTS = 30
ABORT_BATCH = 10  # clients hanging up at the same time
CONCURRENT_SLEEPS = 6  # requests in flight for the thread count comparison
SETTLE_TIMEOUT = 15.0  # seconds for thread and descriptor counts to return


# -- fixtures ------------------------------------------------------------------

@pytest.fixture(scope='session')
def webpy_target(server_python):
    """Folder containing web.py for ``server_python``, installed from PyPI once."""
    if webpy.webpy_version(server_python) is None:
        pytest.fail('no web.py release is tested on this Python')
    return webpy.install_webpy(server_python)


class Site(object):
    """A web server in front of the web.py app: its URL, the app's pid and logs.

    ``fcgi_address`` is the app's FastCGI listening address, for direct
    FCGI_GET_VALUES queries.  ``log_text()`` returns the app's stderr
    followed by the web server's error log (lighttpd writes the stderr of a
    bin-path child into its own log).
    """

    def __init__(self, kind, front, app, app_pid, fcgi_address):
        self.kind = kind
        self.front = front
        self.app = app
        self.app_pid = app_pid
        self.fcgi_address = fcgi_address

    @property
    def url(self):
        return self.front.url

    def app_log_text(self):
        return self.app.log_text() if self.app is not None else u''

    def web_server_log_text(self):
        return self.front.error_log_text()

    def log_text(self):
        return self.app_log_text() + self.web_server_log_text()

    def stop(self):
        self.front.stop()
        if self.app is not None:
            self.app.stop()

    def __repr__(self):
        return '<Site %s %s app pid %s>' % (self.kind, self.url, self.app_pid)


def _track(request, item):
    """Stop ``item`` when the test ends; conftest attaches its log to a failure report."""
    started = getattr(request.node, 'flup_started_servers', None)
    if started is None:
        started = request.node.flup_started_servers = []
    started.append(item)
    request.addfinalizer(item.stop)
    return item


@pytest.fixture
def deploy(request, workdir, server_python, webpy_target):
    """Start the web.py app behind a web server: ``deploy(kind, multiplexed=None, ...)``.

    ``kind`` is one of DEPLOYMENTS.  ``multiplexed`` is the value of
    FLUP_MULTIPLEXED in the app's environment; None sets it empty, which
    leaves the choice to web.py's ``multiplexed=True``.  ``script_name``
    mounts the app under a prefix (nginx: SCRIPT_NAME, lighttpd: the
    fastcgi.server prefix).  ``lighttpd_options`` go to webservers.Lighttpd.
    """
    counter = [0]

    def start(kind, multiplexed=None, script_name='', lighttpd_options=None):
        if kind not in DEPLOYMENTS:
            raise ValueError('invalid deployment %r: expected one of %s' % (kind, ', '.join(DEPLOYMENTS)))
        counter[0] += 1
        folder = os.path.join(workdir, 'site%d' % counter[0])
        os.makedirs(folder)
        app_env = {'FLUP_MULTIPLEXED': multiplexed or ''}
        front_dir = os.path.join(folder, 'front')
        lighttpd_options = dict(lighttpd_options or {})
        if script_name:
            lighttpd_options.setdefault('prefix', script_name)

        if kind == 'lighttpd-bin-path':
            environ = webpy.app_environment(webpy_target, app_env)
            bin_environment = dict((name, environ[name]) for name in
                                   ('PYTHONPATH', 'PYTHONDONTWRITEBYTECODE', 'FLUP_MULTIPLEXED'))
            bin_environment.update(lighttpd_options.pop('bin_environment', {}))
            # No "fastcgi" argument: web.py must find out from PHP_FCGI_CHILDREN.
            argv = webpy.bin_path_argv(server_python)[:-1]
            front = _track(request, webservers.Lighttpd(
                bin_path=argv, bin_environment=bin_environment, workdir=front_dir,
                **lighttpd_options))
            front.start()
            children = procinfo.wait_until(lambda: procinfo.child_pids(front.pid), 10.0)
            assert children, 'lighttpd started no bin-path child; log:\n%s' % front.error_log_text()
            # lighttpd 1.4 appends the process number to the "socket" path.
            address = os.path.join(front_dir, 'spawned.sock-0')
            return Site(kind, front, None, children[0], address)

        if kind.endswith('-argv'):
            app = webpy.WebpyApp(server_python, webpy_target, folder, mode='argv', env=app_env)
        else:
            socket_kind = 'unix' if kind.endswith('-unix') else 'tcp'
            app = webpy.WebpyApp(server_python, webpy_target, folder, mode='spawn-fcgi',
                                 socket_kind=socket_kind, env=app_env)
        _track(request, app)
        app.start()
        if isinstance(app.address, str):
            backend = 'unix:' + app.address
        else:
            backend = '%s:%d' % app.address
        if kind.startswith('nginx'):
            front = webservers.Nginx(fastcgi=backend, script_name=script_name, workdir=front_dir)
        else:
            front = webservers.Lighttpd(fastcgi=backend, workdir=front_dir, **lighttpd_options)
        _track(request, front)
        front.start()
        return Site(kind, front, app, app.pid, app.address)

    return start


def get_json(url):
    status, _, body = http_get(url)
    assert status == 200, body
    return json.loads(body.decode('utf-8'))


def capabilities(site):
    with fcgi_wire.Client(site.fcgi_address) as client:
        return client.get_values(CAPABILITY_NAMES)


def startup_lines(site):
    return [line for line in site.log_text().splitlines() if 'serving FastCGI on' in line]


def run_concurrently(function, count):
    """Call ``function()`` in ``count`` threads at once; return the results in start order."""
    results = [None] * count

    def call(index):
        results[index] = function()

    threads = [threading.Thread(target=call, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60.0)
    assert not any(thread.is_alive() for thread in threads), 'a client thread did not finish in 60 s'
    return results


def steady_stats(pid, timeout=15.0, interval=0.1, samples=25):
    """Return ``procinfo.process_stats(pid)`` once its thread and descriptor
    counts stay the same for ``samples`` readings in a row, or None after
    ``timeout`` seconds.

    Pool threads above the pool's maxSpare, and connections that are still
    closing, leave shortly after the last response (a surplus thread after
    one to two idle seconds); this waits them out.
    """
    history = []

    def steady():
        stats = procinfo.process_stats(pid)
        history.append(stats)
        recent = [(item['threads'], item['fds']) for item in history[-samples:]]
        return len(recent) == samples and len(set(recent)) == 1

    if procinfo.wait_until(steady, timeout, interval):
        return history[-1]
    return None


# -- requests ------------------------------------------------------------------

@pytest.mark.parametrize('kind', DEPLOYMENTS)
def test_webpy_get_and_post(deploy, kind, server_python):
    site = deploy(kind)

    status, _, body = http_get(site.url + '/')
    assert status == 200
    assert body == b'hello from web.py\n'

    info = get_json(site.url + '/info?x=1')
    assert info['ctx_path'] == '/info'
    assert info['ctx_homepath'] == ''
    assert info['flup_file'].startswith(os.path.join(REPO_ROOT, 'flup') + os.sep)
    assert info['web_version'] == webpy.webpy_version(server_python)
    assert info['debug'] is False
    assert info['multithread'] is True
    assert info['multiprocess'] is False

    payload = os.urandom(200000)
    status, _, body = http_post(site.url + '/echo', payload,
                                headers={'Content-Type': 'application/octet-stream'})
    assert status == 200, body
    echoed = json.loads(body.decode('utf-8'))
    assert echoed['length'] == len(payload)
    assert echoed['sha256'] == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize('kind, options', [
    ('nginx-argv', {}),
    ('lighttpd-argv', {}),
    ('lighttpd-bin-path', {}),
    # A common lighttpd set-up for a root mount: without fix-root-scriptname
    # lighttpd puts the path into SCRIPT_NAME, and REAL_SCRIPT_NAME makes
    # web.py use an empty prefix instead.
    ('lighttpd-bin-path', {'fix_root_scriptname': False, 'bin_environment': {'REAL_SCRIPT_NAME': ''}}),
])
def test_webpy_paths_at_root(deploy, kind, options):
    site = deploy(kind, lighttpd_options=options)
    for path in ('/info', '/info/', '/echo'):
        status, _, body = http_get(site.url + path)
        # /info/ and GET /echo have no handler, so web.py returns 404 and 405.
        expected = {'/info': 200, '/info/': 404, '/echo': 405}[path]
        assert status == expected, (path, body)
    info = get_json(site.url + '/info?a=b')
    assert info['ctx_path'] == '/info'
    assert info['ctx_homepath'] == ''


@pytest.mark.parametrize('kind', ['nginx-argv', 'lighttpd-argv'])
def test_webpy_paths_under_prefix(deploy, kind):
    site = deploy(kind, script_name='/app')
    info = get_json(site.url + '/app/info')
    assert info['ctx_path'] == '/info'
    assert info['ctx_homepath'] == '/app'
    assert info['script_name'] == '/app'
    assert info['path_info'] == '/info'
    status, _, body = http_get(site.url + '/app/')
    assert status == 200
    assert body == b'hello from web.py\n'


DOCS_PATH = os.path.join(REPO_ROOT, 'docs', 'webpy.md')
DOCUMENTED_PASS = 'fastcgi_pass 127.0.0.1:9000;'
NGINX_FASTCGI_PARAMS = '/etc/nginx/fastcgi_params'  # from Debian's nginx-common


def documented_nginx_locations():
    """Return ``{prefix: body}`` for each nginx location block in docs/webpy.md."""
    with io.open(DOCS_PATH, encoding='utf-8') as docs:
        text = docs.read()
    locations = {}
    for block in re.findall(r'```nginx\n(.*?)```', text, re.S):
        match = re.match(r'\s*location\s+(\S+)\s*\{(.*)\}\s*$', block, re.S)
        assert match, 'invalid nginx block in %s:\n%s' % (DOCS_PATH, block)
        locations[match.group(1)] = match.group(2)
    return locations


class DocumentedNginx(webservers.Nginx):
    """nginx serving one location block copied from docs/webpy.md.

    The block's ``fastcgi_pass`` is pointed at the wrapper's upstream and
    ``include fastcgi_params`` at the system file, because the test
    configuration lives in a private folder.
    NOTE: this overrides the wrapper's private _location_header and
    _location_body, and relies on its upstream being named flup_backend.
    """

    def __init__(self, prefix, body, **options):
        webservers.Nginx.__init__(self, **options)
        assert DOCUMENTED_PASS in body, body
        self.documented_prefix = prefix
        self.documented_body = (body.replace('include fastcgi_params;', 'include %s;' % NGINX_FASTCGI_PARAMS)
                                .replace(DOCUMENTED_PASS, 'fastcgi_pass flup_backend;'))

    def _location_header(self):
        return 'location %s' % self.documented_prefix

    def _location_body(self):
        return self.documented_body


def test_webpy_documented_nginx_config(request, workdir, server_python, webpy_target):
    locations = documented_nginx_locations()
    assert sorted(locations) == ['/', '/app/']
    app = _track(request, webpy.WebpyApp(server_python, webpy_target, workdir, mode='argv'))
    app.start()
    backend = '%s:%d' % app.address

    root = _track(request, DocumentedNginx('/', locations['/'], fastcgi=backend,
                                           workdir=os.path.join(workdir, 'root')))
    root.start()
    info = get_json(root.url + '/info')
    assert info['ctx_path'] == '/info'
    assert info['ctx_homepath'] == ''
    root.stop()

    mounted = _track(request, DocumentedNginx('/app/', locations['/app/'], fastcgi=backend,
                                              workdir=os.path.join(workdir, 'mounted')))
    mounted.start()
    info = get_json(mounted.url + '/app/info')
    assert info['ctx_path'] == '/info'
    assert info['ctx_homepath'] == '/app'
    status, _, body = http_get(mounted.url + '/app/')
    assert status == 200
    assert body == b'hello from web.py\n'


DOCUMENTED_SOCKET = '/run/myapp/fcgi.sock'
DOCUMENTED_PYTHON = '/opt/myapp/venv/bin/python'
DOCUMENTED_SCRIPT = '/srv/myapp/app.py'
DOCUMENTED_OWNER = '-u myapp -g www-data'
SOCKET_GROUP = 'www-data'  # nginx's group on Debian


def documented_spawn_fcgi_commands():
    """Return each spawn-fcgi command of docs/webpy.md, continuation lines joined."""
    with io.open(DOCS_PATH, encoding='utf-8') as docs:
        text = docs.read()
    commands = []
    for block in re.findall(r'```sh\n(.*?)```', text, re.S):
        for command in block.replace('\\\n', ' ').splitlines():
            if 'spawn-fcgi' in command:
                commands.append(' '.join(command.split()))
    return commands


def test_webpy_documented_spawn_fcgi_sets_owner():
    commands = documented_spawn_fcgi_commands()
    assert len(commands) == 2
    for command in commands:
        assert DOCUMENTED_OWNER in command, command
        assert ' -n ' in command, command
        assert DOCUMENTED_PYTHON in command, command


def test_webpy_documented_spawn_fcgi_unix(request, workdir, server_python, webpy_target):
    """Run the documented Unix socket command; the socket and app get group www-data.

    The test runs as root and there is no ``myapp`` user, so ``-u myapp``
    is left out.  spawn-fcgi still applies ``-g`` to the socket and the process.
    """
    webservers.require_binary(webpy.SPAWN_FCGI, 'spawn-fcgi')
    group_id = grp.getgrnam(SOCKET_GROUP).gr_gid
    command = [line for line in documented_spawn_fcgi_commands() if DOCUMENTED_SOCKET in line]
    assert len(command) == 1
    socket_path = os.path.join(tempfile.mkdtemp(prefix='webpy-', dir='/tmp'), 'fcgi.sock')
    request.addfinalizer(lambda: shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True))
    text = command[0]
    for old, new in [(DOCUMENTED_SOCKET, socket_path), (DOCUMENTED_PYTHON, server_python),
                     (DOCUMENTED_SCRIPT, webpy.APP_SCRIPT), ('-u myapp ', '')]:
        assert old in text, text
        text = text.replace(old, new)
    words = shlex.split(text)
    environ = webpy.app_environment(webpy_target)
    while '=' in words[0]:
        name, _, value = words.pop(0).partition('=')
        environ[name] = value
    assert words[0] == 'spawn-fcgi'
    words[0] = webpy.SPAWN_FCGI

    log_path = os.path.join(workdir, 'spawn-fcgi.log')
    with io.open(log_path, 'ab') as log_file:
        process = subprocess.Popen(words, env=environ, cwd=workdir, stdin=open(os.devnull, 'rb'),
                                   stdout=log_file, stderr=log_file, preexec_fn=os.setsid,
                                   close_fds=True)

    def stop():
        if process.poll() is None:
            process.terminate()
            procinfo.wait_until(lambda: process.poll() is not None, 10)
        kill_session(process.pid)
        process.wait()

    request.addfinalizer(stop)
    assert procinfo.wait_until(lambda: os.path.exists(socket_path), 10), log_path

    def responds():
        try:
            with fcgi_wire.Client(socket_path) as client:
                return client.request(fcgi_wire.cgi_params(path='/'))
        except (socket.error, OSError):
            return None

    # spawn-fcgi binds, then sets the mode and group, then execs the
    # application: only an answer shows that all of that is done.
    response = procinfo.wait_until(responds, webpy.READY_TIMEOUT)
    assert response is not None, io.open(log_path, 'rb').read()
    assert response.status == 200
    assert response.body == b'hello from web.py\n'
    info = os.stat(socket_path)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == group_id
    # spawn-fcgi -n execs the application, so the pid is the application's.
    with io.open('/proc/%d/status' % process.pid, encoding='utf-8') as status_file:
        gid_line = [line for line in status_file if line.startswith('Gid:')][0]
    assert int(gid_line.split()[1]) == group_id


# -- FLUP_MULTIPLEXED -----------------------------------------------------------

@pytest.mark.parametrize('kind', DEPLOYMENTS)
@pytest.mark.parametrize('setting, mode, source, mpxs', [
    (None, 'on', 'argument', '1'),
    ('0', 'off', 'FLUP_MULTIPLEXED', '0'),
    ('No', 'off', 'FLUP_MULTIPLEXED', '0'),
])
def test_webpy_multiplexed_mode_reported(deploy, kind, setting, mode, source, mpxs):
    site = deploy(kind, multiplexed=setting)
    assert http_get(site.url + '/')[0] == 200
    lines = startup_lines(site)
    assert len(lines) == 1, site.log_text()
    assert 'multiplexing %s (set by %s)' % (mode, source) in lines[0]
    values = capabilities(site)
    assert values['FCGI_MPXS_CONNS'] == mpxs
    assert int(values['FCGI_MAX_CONNS']) > 0
    assert int(values['FCGI_MAX_REQS']) > 0


def _peak_threads(site, minimum):
    """Send CONCURRENT_SLEEPS sleeping requests; return (peak thread count, statuses).

    The peak is sampled until every request has finished, after the count
    first reached ``minimum`` (or 5 s passed), so it covers the time all
    requests were running at once.
    """
    statuses = []

    def sleeper():
        statuses.append(http_get(site.url + '/sleep?seconds=3')[0])

    threads = [threading.Thread(target=sleeper) for _ in range(CONCURRENT_SLEEPS)]
    for thread in threads:
        thread.start()
    peak = [0]

    def sample():
        count = procinfo.thread_count(site.app_pid)
        peak[0] = max(peak[0], count)
        return count >= minimum

    def sample_until_done():
        sample()
        return not any(thread.is_alive() for thread in threads)

    procinfo.wait_until(sample, 5.0, interval=0.02)
    procinfo.wait_until(sample_until_done, 10.0, interval=0.02)
    for thread in threads:
        thread.join(10.0)
    return peak[0], statuses


@pytest.mark.parametrize('kind', ['nginx-argv', 'lighttpd-bin-path'])
def test_webpy_multiplexed_off_starts_no_request_threads(deploy, kind):
    # Each of the concurrent requests has a FastCGI connection of its own
    # (neither nginx nor lighttpd multiplexes), served by one pool thread.
    # With multiplexing on, every request also runs on a second pool thread.
    # Besides the pool there is the main thread.
    counts = {}
    for setting in ('0', '1'):
        site = deploy(kind, multiplexed=setting)
        assert http_get(site.url + '/')[0] == 200
        idle = steady_stats(site.app_pid)['threads']
        per_request = 2 if setting == '1' else 1
        peak, statuses = _peak_threads(site, 1 + per_request * CONCURRENT_SLEEPS)
        assert statuses == [200] * CONCURRENT_SLEEPS
        counts[setting] = {'idle': idle, 'peak': peak}
        site.stop()
    # Off: one thread per request.  The idle pool threads (usually one) take
    # the first requests.  The bound allows one more thread, in case the
    # warm-up request's thread was still closing its connection.
    assert counts['0']['peak'] >= 1 + CONCURRENT_SLEEPS, counts
    assert counts['0']['peak'] <= counts['0']['idle'] + CONCURRENT_SLEEPS, counts
    # On: two threads per request.
    assert counts['1']['peak'] >= 1 + 2 * CONCURRENT_SLEEPS, counts


def test_webpy_invalid_multiplexed_stops_startup(webpy_target, server_python, workdir):
    environ = webpy.app_environment(webpy_target, {'FLUP_MULTIPLEXED': 'bogus'})
    argv = [server_python, webpy.APP_SCRIPT, 'fastcgi', '127.0.0.1:%d' % free_port()]
    returncode, stdout, stderr = run_command(argv, env=environ, timeout=30.0)
    message = stderr.decode('utf-8', 'replace')
    assert returncode != 0, message
    lines = [line for line in message.splitlines() if 'FLUP_MULTIPLEXED' in line and 'bogus' in line]
    assert lines, message
    words = re.findall(r'[A-Za-z0-9_]+', lines[-1])
    for word in ACCEPTED_WORDS:
        assert word in words, lines[-1]
    assert 'serving FastCGI on' not in message


# -- hang-ups ------------------------------------------------------------------

@pytest.mark.hangup
@pytest.mark.slow
@pytest.mark.parametrize('kind', DEPLOYMENTS)
@pytest.mark.parametrize('setting', [None, '0'])
def test_webpy_aborted_clients_release_resources(deploy, kind, setting):
    site = deploy(kind, multiplexed=setting)
    # Warm up past the pool's maxSpare (5), so the idle threads it keeps
    # are already there when the baseline is taken.
    statuses = run_concurrently(lambda: http_get(site.url + '/sleep?seconds=0.5')[0], 8)
    assert statuses == [200] * 8
    pid = site.app_pid
    base = steady_stats(pid)
    assert base is not None, 'thread and descriptor counts of pid %d did not settle' % pid
    assert base['sockets']['ESTABLISHED'] == 0, base

    for _ in range(ABORTED_CLIENTS // ABORT_BATCH):
        run_concurrently(lambda: abort_http(site.url + '/sleep?seconds=1', 0.2), ABORT_BATCH)

    def settled():
        return (procinfo.thread_count(pid) == base['threads']
                and procinfo.fd_count(pid) == base['fds'])

    procinfo.wait_until(settled, SETTLE_TIMEOUT)
    after = procinfo.process_stats(pid)
    assert after['threads'] == base['threads'], (base, after)
    assert after['fds'] == base['fds'], (base, after)
    assert after['sockets'] == base['sockets'], (base, after)
    for _ in range(10):
        status, _, body = http_get(site.url + '/')
        assert status == 200
        assert body == b'hello from web.py\n'


# -- errors --------------------------------------------------------------------

def wait_for_text(read_log, text, timeout=10.0):
    """Return ``read_log()`` once it contains ``text``, or '' after ``timeout`` seconds."""
    def read_if_found():
        log = read_log()
        return log if text in log else ''

    return procinfo.wait_until(read_if_found, timeout)


def _assert_generic_page(body):
    text = body.decode('utf-8', 'replace')
    assert SECRET_MARKER not in text
    assert 'Traceback' not in text
    assert 'RuntimeError' not in text
    assert 'app.py' not in text


@pytest.mark.parametrize('kind', DEPLOYMENTS)
def test_webpy_handler_error_page(deploy, kind):
    site = deploy(kind)

    # web.py catches the handler's exception, writes the traceback to
    # wsgi.errors (flup's FastCGI stderr stream) and sends its own page.
    status, _, body = http_get(site.url + '/boom')
    assert status == 500
    _assert_generic_page(body)
    web_log = wait_for_text(site.web_server_log_text, SECRET_MARKER)
    assert web_log, site.log_text()
    assert 'Traceback' in web_log

    # A middleware outside web.py raises, so flup's own error page is sent.
    status, headers, body = http_get(site.url + '/boom-wsgi')
    assert status == 500
    _assert_generic_page(body)
    assert b'Internal Server Error' in body
    assert headers['content-type'].startswith('text/html')
    log = wait_for_text(site.log_text, 'middleware failed: ' + SECRET_MARKER)
    assert log, site.log_text()
    assert 'ERROR flup.server' in log
    assert 'application error in request' in log

    # The server goes on serving.
    assert http_get(site.url + '/')[0] == 200


# -- SERVER_SOFTWARE outside a CGI server ----------------------------------------

def test_webpy_server_software_runs_cgi_once(webpy_target, server_python):
    # web.py's runwsgi treats any SERVER_SOFTWARE in the process environment
    # as CGI and sets FCGI_FORCE_CGI=Y, so flup runs the application once on
    # the CGI variables and exits instead of serving.
    environ = webpy.app_environment(webpy_target, {
        'SERVER_SOFTWARE': 'gunicorn/21.2.0',
        'REQUEST_METHOD': 'GET',
        'PATH_INFO': '/',
        'SCRIPT_NAME': '',
        'QUERY_STRING': '',
        'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1',
    })
    argv = [server_python, webpy.APP_SCRIPT]
    returncode, stdout, stderr = run_command(argv, env=environ, timeout=30.0)
    assert returncode == 0, stderr
    status, _, body = webservers.parse_cgi_response(stdout)
    assert status == 200, stdout
    assert body == b'hello from web.py\n'
    assert b'serving FastCGI on' not in stderr
