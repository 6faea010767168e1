"""Run the configuration blocks of docs/nginx.md, lighttpd.md and apache.md.

A page marks each block that this file runs with an HTML comment
``<!-- tested: NAME -->`` on the line before the fence.  A test takes the
block and replaces the example addresses and paths (``127.0.0.1:9000``,
``/run/flup-myapp/app.sock``, ``/srv/myapp``...) with temporary ones.  It
wraps the block in the few global lines that the real web server needs to
run from a temporary folder (pid file, logs, listening port), then sends
requests through the web server to a flup server.  Each replaced string
must occur in the block, so a changed example fails here instead of going
untested.
"""

from __future__ import absolute_import, print_function

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile

import pytest
from six.moves import http_client

from tests.support import procinfo, webservers
from tests.support.servers import REPO_ROOT, SUPPORT_DIR, kill_session, unix_socket_path
from tests.test_e2e_fastcgi import fastcgi_connections

pytestmark = pytest.mark.e2e

DOCS_DIR = os.path.join(REPO_ROOT, 'docs')
NGINX_FASTCGI_PARAMS = '/etc/nginx/fastcgi_params'  # installed by Debian's nginx-common
SPAWN_FCGI = '/usr/bin/spawn-fcgi'

EXAMPLE_TCP = '127.0.0.1:9000'
EXAMPLE_SOCKET = '/run/flup-myapp/app.sock'
EXAMPLE_APP_DIR = '/srv/myapp'
EXAMPLE_PYTHON = '/opt/myapp/venv/bin/python'
EXAMPLE_VENV = '/opt/myapp/venv'
EXAMPLE_CHECKOUT = '/path/to/flup'
EXAMPLE_LOG_FILE = '/var/log/myapp/flup.log'
SYSTEM_PYTHON = '/usr/bin/python3'  # Debian 12's; pip rejects installs into it (PEP 668)
LARGE_BODY_BYTES = 3 * 1024 * 1024  # above nginx's default client_max_body_size of 1 MiB

# Block names that each page must contain, in any order.
EXPECTED_BLOCKS = {
    'nginx.md': {'nginx-upstream-tcp', 'nginx-upstream-unix', 'nginx-root', 'nginx-prefix',
                 'launcher', 'systemd-unit', 'spawn-fcgi', 'venv-install'},
    'lighttpd.md': {'lighttpd-tcp', 'lighttpd-unix', 'lighttpd-prefix', 'lighttpd-bin-path'},
    'apache.md': {'apache-tcp', 'apache-unix', 'apache-prefix'},
}

# Fence languages of configuration and code; each such block must be marked.
CONFIG_LANGUAGES = ('nginx', 'lighttpd', 'apache', 'ini', 'python', 'sh')

FENCE = re.compile(r'^```([A-Za-z0-9_-]*)\n(.*?)^```$', re.M | re.S)
MARK = re.compile(r'<!-- tested: ([a-z0-9-]+) -->\s*$')

READY_TIMEOUT = 15.0  # seconds for a started process to accept connections


def read_page(name):
    """Return docs/``name`` as a native str (shlex on Python 2.7 needs bytes)."""
    with io.open(os.path.join(DOCS_DIR, name), encoding='utf-8') as page:
        text = page.read()
    return text.encode('utf-8') if str is bytes else text


def write_text(path, text):
    """Write a native str or unicode ``text`` to ``path`` as UTF-8."""
    if isinstance(text, bytes):
        text = text.decode('utf-8')
    with io.open(path, 'w', encoding='utf-8') as text_file:
        text_file.write(text)


def fenced_blocks(text):
    """Return (mark name or None, language, body) for each fenced block of ``text``."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip('\n').rsplit('\n', 1)[-1]
        mark = MARK.search(before)
        blocks.append((mark.group(1) if mark else None, match.group(1), match.group(2)))
    return blocks


def doc_block(page, name):
    """Return the body of the block marked ``name`` in docs/``page``."""
    found = [body for mark, _, body in fenced_blocks(read_page(page)) if mark == name]
    assert len(found) == 1, 'docs/%s has %d blocks marked %r' % (page, len(found), name)
    return found[0]


def substitute(text, replacements):
    """Replace each (old, new) pair in ``text``; every ``old`` must occur."""
    for old, new in replacements:
        assert old in text, '%r not found in the documented block:\n%s' % (old, text)
        text = text.replace(old, new)
    return text


def load_json(body):
    return json.loads(body.decode('utf-8'))


def check_echo(url, path, script_name, path_info):
    """GET ``path`` and a small POST through ``url``; check what the echo app received."""
    status, headers, body = webservers.http_get(url + path + '?x=1',
                                                headers={'X-Test': 'docs'})
    assert status == 200
    document = load_json(body)
    assert document['SCRIPT_NAME'] == script_name
    assert document['PATH_INFO'] == path_info
    assert document['QUERY_STRING'] == 'x=1'
    assert document['headers']['HTTP_X_TEST'] == 'docs'

    payload = os.urandom(100000)
    status, headers, body = webservers.http_post(url + path, payload)
    assert status == 200
    document = load_json(body)
    assert document['method'] == 'POST'
    assert document['body_sha1'] == hashlib.sha1(payload).hexdigest()


def check_large_post(url, path):
    """POST LARGE_BODY_BYTES through ``url``; the web server must not reject it with 413."""
    payload = os.urandom(LARGE_BODY_BYTES)
    status, headers, body = webservers.http_post(url + path, payload)
    assert status == 200
    assert load_json(body)['body_sha1'] == hashlib.sha1(payload).hexdigest()


def backend_port(server):
    return server.address[1]


@pytest.fixture
def shared_dir(request):
    """A folder that www-data may traverse (Apache drops root), removed afterwards."""
    path = tempfile.mkdtemp(prefix='flup-docs-')
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


@pytest.fixture
def start_web_server(request):
    """Start a web server object and stop it when the test ends; log shown on failure."""
    def start(server):
        started = getattr(request.node, 'flup_started_servers', None)
        if started is None:
            started = request.node.flup_started_servers = []
        started.append(server)
        request.addfinalizer(server.stop)
        return server.start()

    return start


# -- the pages themselves ---------------------------------------------------------

@pytest.mark.parametrize('page', sorted(EXPECTED_BLOCKS))
def test_docs_blocks_marked(page):
    blocks = fenced_blocks(read_page(page))
    names = [mark for mark, _, _ in blocks if mark is not None]
    assert sorted(set(names)) == sorted(names), 'a block name is used twice'
    assert set(names) == EXPECTED_BLOCKS[page]
    unmarked = [body for mark, language, body in blocks
                if mark is None and language in CONFIG_LANGUAGES]
    assert unmarked == [], 'configuration blocks without a tested mark'


# -- web servers that run a documented block ---------------------------------------

class NginxWithBlocks(webservers.WebServer):
    """nginx whose http block includes the documented blocks, joined in order."""

    name = 'nginx'

    def __init__(self, blocks, replacements, workdir=None):
        webservers.require_binary(webservers.NGINX, 'nginx')
        webservers.WebServer.__init__(self, workdir)
        self.blocks = blocks
        self.replacements = replacements
        self.config_path = os.path.join(self.workdir, 'nginx.conf')

    def command(self):
        return [webservers.NGINX, '-p', self.workdir + '/', '-c', self.config_path,
                '-e', self.error_log_path, '-g', 'daemon off;']

    def stop_signal(self):
        return signal.SIGQUIT

    def write_config(self):
        # Relative includes resolve against the folder of the -c file, so
        # 'include fastcgi_params;' finds Debian's file through this copy.
        shutil.copy(NGINX_FASTCGI_PARAMS, os.path.join(self.workdir, 'fastcgi_params'))
        for folder in ('temp', 'html'):
            path = os.path.join(self.workdir, folder)
            if not os.path.isdir(path):
                os.makedirs(path)
        replacements = list(self.replacements) + [('listen 80;', 'listen 127.0.0.1:%d;' % self.port)]
        snippet = substitute('\n'.join(self.blocks), replacements)
        write_text(os.path.join(self.workdir, 'site.conf'), snippet)
        temp = os.path.join(self.workdir, 'temp')
        user = 'user root root;\n' if os.geteuid() == 0 else ''
        config = (user + 'worker_processes 1;\n'
                  'pid %(workdir)s/nginx.pid;\n'
                  'error_log %(error_log)s info;\n'
                  'events { worker_connections 64; }\n'
                  'http {\n'
                  '    access_log %(access_log)s;\n'
                  '    client_body_temp_path %(temp)s/client_body;\n'
                  '    fastcgi_temp_path %(temp)s/fastcgi;\n'
                  '    proxy_temp_path %(temp)s/proxy;\n'
                  '    uwsgi_temp_path %(temp)s/uwsgi;\n'
                  '    scgi_temp_path %(temp)s/scgi;\n'
                  '    include site.conf;\n'
                  '}\n') % {'workdir': self.workdir, 'error_log': self.error_log_path,
                            'access_log': self.access_log_path, 'temp': temp}
        write_text(self.config_path, config)


class LighttpdWithBlock(webservers.WebServer):
    """lighttpd with mod_fastcgi and a documented block appended."""

    name = 'lighttpd'

    def __init__(self, block, replacements, workdir=None):
        webservers.require_binary(webservers.LIGHTTPD, 'lighttpd')
        webservers.WebServer.__init__(self, workdir)
        self.block = substitute(block, replacements)
        self.config_path = os.path.join(self.workdir, 'lighttpd.conf')

    def command(self):
        return [webservers.LIGHTTPD, '-D', '-f', self.config_path, '-m', webservers.LIGHTTPD_MODULES]

    def write_config(self):
        htdocs = os.path.join(self.workdir, 'htdocs')
        uploads = os.path.join(self.workdir, 'uploads')
        for folder in (htdocs, uploads):
            if not os.path.isdir(folder):
                os.makedirs(folder)
        lines = [
            'server.modules = ("mod_accesslog", "mod_fastcgi")',
            'server.document-root = "%s"' % htdocs,
            'server.upload-dirs = ("%s")' % uploads,
            'server.bind = "127.0.0.1"',
            'server.port = %d' % self.port,
            'server.errorlog = "%s"' % self.error_log_path,
            'accesslog.filename = "%s"' % self.access_log_path,
            self.block,
            '',
        ]
        write_text(self.config_path, '\n'.join(lines))


class ApacheWithBlock(webservers.WebServer):
    """Apache httpd (one process, -X) with mod_proxy_fcgi and a documented block."""

    name = 'apache'

    def __init__(self, block, replacements, document_root, workdir=None):
        webservers.require_binary(webservers.APACHE, 'apache2')
        webservers.WebServer.__init__(self, workdir)
        self.block = block
        self.replacements = replacements
        self.document_root = document_root
        self.config_path = os.path.join(self.workdir, 'httpd.conf')

    def command(self):
        return [webservers.APACHE, '-X', '-d', self.workdir, '-f', self.config_path]

    def write_config(self):
        builtins = webservers.apache_builtin_modules()
        modules = [name for name in ('mpm_event', 'authz_core', 'unixd', 'log_config', 'alias',
                                     'proxy', 'proxy_fcgi') if name not in builtins]
        lines = ['LoadModule %s_module %s/mod_%s.so' % (name, webservers.APACHE_MODULES, name)
                 for name in modules]
        if os.geteuid() == 0:
            lines += ['User www-data', 'Group www-data']
        lines += [
            'ServerRoot %s' % self.workdir,
            'ServerName 127.0.0.1',
            'Listen 127.0.0.1:%d' % self.port,
            'PidFile %s' % os.path.join(self.workdir, 'httpd.pid'),
            'DefaultRuntimeDir %s' % self.workdir,
            'ErrorLog %s' % self.error_log_path,
            'LogLevel info',
            'CustomLog %s "%%h %%r %%>s %%b"' % self.access_log_path,
            'DocumentRoot %s' % self.document_root,
            substitute(self.block, list(self.replacements) + [('*:80', '*:%d' % self.port)]),
            '',
        ]
        write_text(self.config_path, '\n'.join(lines))


# -- nginx.md ------------------------------------------------------------------------

def nginx_upstream(server):
    """Return the documented upstream block for ``server`` and its replacements."""
    if isinstance(server.address, str):
        return doc_block('nginx.md', 'nginx-upstream-unix'), [(EXAMPLE_SOCKET, server.address)]
    return (doc_block('nginx.md', 'nginx-upstream-tcp'),
            [(EXAMPLE_TCP, '127.0.0.1:%d' % backend_port(server))])


def params_set_host_without_port():
    """Return whether Debian's fastcgi_params sends HTTP_HOST as $host, as nginx.md says.

    Debian's package has the line since 1.22.1-9+deb12u6 (its changelog
    says so); older versions and other distributions lack it.
    """
    with io.open(NGINX_FASTCGI_PARAMS, encoding='utf-8') as params:
        lines = [line.split() for line in params if line.strip().startswith('fastcgi_param')]
    return ['fastcgi_param', 'HTTP_HOST', '$host;'] in lines


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_docs_root(server_factory, start_web_server, workdir, bind):
    server = server_factory('threaded', 'echo', bind=bind)
    upstream, replacements = nginx_upstream(server)
    nginx = start_web_server(NginxWithBlocks(
        [upstream, doc_block('nginx.md', 'nginx-root')], replacements,
        workdir=os.path.join(workdir, 'nginx')))
    check_echo(nginx.url, '/a/b', '', '/a/b')
    check_echo(nginx.url, '/', '', '/')
    check_large_post(nginx.url, '/upload')
    if params_set_host_without_port():
        status, headers, body = webservers.http_get(nginx.url + '/host')
        assert load_json(body)['headers']['HTTP_HOST'] == '127.0.0.1'
    # keepalive with fastcgi_keep_conn: the requests above share one connection.
    connections = procinfo.wait_until(lambda: len(fastcgi_connections(server)) == 1, 10)
    assert connections


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_docs_prefix(server_factory, start_web_server, workdir, bind):
    server = server_factory('threaded', 'echo', bind=bind)
    upstream, replacements = nginx_upstream(server)
    htdocs = os.path.join(workdir, 'htdocs')
    os.makedirs(htdocs)
    with io.open(os.path.join(htdocs, 'index.html'), 'wb') as index:
        index.write(b'static page\n')
    nginx = start_web_server(NginxWithBlocks(
        [upstream, doc_block('nginx.md', 'nginx-prefix')],
        replacements + [('/var/www/html', htdocs)],
        workdir=os.path.join(workdir, 'nginx')))
    check_echo(nginx.url, '/myapp/a/b', '/myapp', '/a/b')
    check_echo(nginx.url, '/myapp/', '/myapp', '/')
    # client_max_body_size 20m, as in the root block.
    check_large_post(nginx.url, '/myapp/upload')

    status, headers, body = webservers.http_get(nginx.url + '/myapp')
    assert status == 301
    assert headers['location'].endswith('/myapp/')

    # Other paths stay with nginx.
    status, headers, body = webservers.http_get(nginx.url + '/')
    assert status == 200
    assert body == b'static page\n'


class CommandServer(object):
    """A documented command that starts flup, run in its own session."""

    def __init__(self, argv, env, cwd, address, log_path):
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.address = address
        self.log_path = log_path
        self.process = None

    @property
    def pid(self):
        return self.process.pid

    def log_text(self):
        try:
            with io.open(self.log_path, 'rb') as log_file:
                return log_file.read().decode('utf-8', 'replace')
        except IOError:
            return u''

    def _accepts(self):
        if self.process.poll() is not None:
            return True  # stop waiting: the process exited
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.address)
            return True
        except (socket.error, OSError):
            return False
        finally:
            probe.close()

    def start(self):
        with io.open(self.log_path, 'ab') as log_file:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=open(os.devnull, 'rb'),
                stdout=log_file, stderr=log_file, preexec_fn=os.setsid, close_fds=True)
        procinfo.wait_until(self._accepts, READY_TIMEOUT)
        assert self.process.poll() is None, 'exited with status %s; log:\n%s' % (
            self.process.returncode, self.log_text())
        return self

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
            except OSError:
                pass
            procinfo.wait_until(lambda: self.process.poll() is not None, 10)
        kill_session(self.process.pid)
        self.process.wait()

    def __repr__(self):
        return '<CommandServer %s>' % ' '.join(self.argv)


@pytest.fixture
def app_dir(shared_dir, server_python):
    """/srv/myapp for the tests: the documented launcher and a myapp.wsgi module.

    ``myapp.wsgi.application`` is the echo app of tests/support/apps.py.
    """
    package = os.path.join(shared_dir, 'myapp')
    os.makedirs(package)
    write_text(os.path.join(package, '__init__.py'), '')
    write_text(os.path.join(package, 'wsgi.py'), 'from apps import echo as application\n')
    write_text(os.path.join(shared_dir, 'app.fcgi'), doc_block('nginx.md', 'launcher'))
    return shared_dir


def command_environment():
    """Environment for a documented command: flup and the test apps on sys.path.

    In production flup is installed; here it is imported from the checkout.
    """
    environ = dict(os.environ)
    environ['PYTHONPATH'] = os.pathsep.join([REPO_ROOT, SUPPORT_DIR])
    return environ


def start_command(request, argv, cwd, address):
    server = CommandServer(argv, command_environment(), cwd, address,
                           os.path.join(cwd, 'command.log'))
    started = getattr(request.node, 'flup_started_servers', None)
    if started is None:
        started = request.node.flup_started_servers = []
    started.append(server)
    request.addfinalizer(server.stop)
    return server.start()


def parse_unit(text):
    """Return the [Service] settings of a systemd unit as a dict of str."""
    settings = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('['):
            section = line.strip('[]')
            continue
        if section == 'Service':
            key, _, value = line.partition('=')
            settings[key] = value
    return settings


RELOADED_APP = """
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'myapp reloaded']
"""


def replace_application(app_dir):
    """Rewrite myapp/wsgi.py as RELOADED_APP and remove its bytecode."""
    package = os.path.join(app_dir, 'myapp')
    write_text(os.path.join(package, 'wsgi.py'), RELOADED_APP)
    # Python 2.7 compares only the source's mtime in whole seconds, so a .pyc
    # written in the same second would be loaded instead.
    for name in ('wsgi.pyc', '__pycache__'):
        path = os.path.join(package, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def check_sighup_reload(server, app_dir, url):
    """Edit the application, send SIGHUP to the launcher and wait for the new code."""
    replace_application(app_dir)
    os.kill(server.pid, signal.SIGHUP)

    def serves_new_code():
        try:
            status, headers, body = webservers.http_get(url, timeout=5)
        except (socket.error, OSError, http_client.HTTPException):
            return False
        return status == 200 and body == b'myapp reloaded'

    assert procinfo.wait_until(serves_new_code, READY_TIMEOUT), server.log_text()
    # os.execv keeps the process id, so systemd still tracks the service.
    assert server.process.poll() is None
    log_text = server.log_text()
    assert 'SIGHUP received: re-executing' in log_text
    assert log_text.count('serving FastCGI on') == 2


def test_systemd_unit_command(request, app_dir, server_python, start_web_server, workdir):
    runtime_dir = tempfile.mkdtemp(prefix='flup-run-', dir=app_dir)
    socket_path = unix_socket_path(runtime_dir, 'app.sock')
    unit = substitute(doc_block('nginx.md', 'systemd-unit'), [
        (EXAMPLE_SOCKET, socket_path),
        (EXAMPLE_APP_DIR, app_dir),
        (EXAMPLE_PYTHON, server_python),
    ])
    service = parse_unit(unit)
    assert service['RuntimeDirectory'] == 'flup-myapp'
    assert service['WorkingDirectory'] == app_dir
    assert service['ExecReload'] == '/bin/kill -HUP $MAINPID'
    server = start_command(request, shlex.split(service['ExecStart']), app_dir, socket_path)
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660  # umask 117 in the launcher

    upstream = substitute(doc_block('nginx.md', 'nginx-upstream-unix'),
                          [(EXAMPLE_SOCKET, socket_path)])
    nginx = start_web_server(NginxWithBlocks(
        [upstream, doc_block('nginx.md', 'nginx-root')], [],
        workdir=os.path.join(workdir, 'nginx')))
    check_echo(nginx.url, '/via/systemd', '', '/via/systemd')
    assert 'flup.access' in server.log_text()

    # systemctl reload sends SIGHUP (ExecReload).
    check_sighup_reload(server, app_dir, nginx.url + '/after/reload')
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660

    server.stop()
    assert server.process.returncode == 0
    assert not os.path.exists(socket_path)


def test_spawn_fcgi_command(request, app_dir, server_python, start_web_server, workdir):
    runtime_dir = tempfile.mkdtemp(prefix='flup-run-', dir=app_dir)
    socket_path = unix_socket_path(runtime_dir, 'app.sock')
    command = doc_block('nginx.md', 'spawn-fcgi').replace('\\\n', ' ')
    command = substitute(command, [
        (EXAMPLE_SOCKET, socket_path),
        (EXAMPLE_APP_DIR, app_dir),
        (EXAMPLE_PYTHON, server_python),
        # The test runs as root without a 'myapp' user; the socket mode is kept.
        ('-u myapp -g www-data ', ''),
    ])
    argv = shlex.split(command)
    assert argv[0] == 'spawn-fcgi'
    webservers.require_binary(SPAWN_FCGI, 'spawn-fcgi')
    argv[0] = SPAWN_FCGI
    server = start_command(request, argv, workdir, socket_path)
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660

    upstream = substitute(doc_block('nginx.md', 'nginx-upstream-unix'),
                          [(EXAMPLE_SOCKET, socket_path)])
    nginx = start_web_server(NginxWithBlocks(
        [upstream, doc_block('nginx.md', 'nginx-root')], [],
        workdir=os.path.join(workdir, 'nginx')))
    check_echo(nginx.url, '/via/spawn-fcgi', '', '/via/spawn-fcgi')
    # The socket on descriptor 0 stays open while the launcher re-executes.
    check_sighup_reload(server, app_dir, nginx.url + '/after/reload')


def test_venv_install_commands(workdir):
    webservers.require_binary(SYSTEM_PYTHON, 'python3')
    venv = os.path.join(workdir, 'venv')
    checkout = os.path.join(workdir, 'flup-checkout')
    # Install from a copy so that build/ and *.egg-info stay out of the repository.
    shutil.copytree(REPO_ROOT, checkout, ignore=shutil.ignore_patterns(
        '.git', '.tox', '.upstream', '__pycache__', '*.pyc', '*.egg-info', 'build'))
    block = substitute(doc_block('nginx.md', 'venv-install'),
                       [(EXAMPLE_VENV, venv), (EXAMPLE_CHECKOUT, checkout)])
    environ = dict(os.environ)
    environ.pop('PYTHONPATH', None)
    for line in block.splitlines():
        argv = shlex.split(line)
        assert argv[0] in (SYSTEM_PYTHON, os.path.join(venv, 'bin', 'pip'))
        subprocess.check_call(argv, cwd=workdir, env=environ)

    # The unit, spawn-fcgi and bin-path examples run this interpreter.
    assert EXAMPLE_PYTHON == EXAMPLE_VENV + '/bin/python'
    python = os.path.join(venv, 'bin', 'python')
    output = subprocess.check_output(
        [python, '-c', 'import flup.server.fcgi, six; print(flup.__file__)'],
        cwd=workdir, env=environ)
    assert output.decode('utf-8').startswith(venv + os.sep)


# -- lighttpd.md -----------------------------------------------------------------------

def lighttpd_replacements(server):
    if isinstance(server.address, str):
        return [(EXAMPLE_SOCKET, server.address)]
    return [('"port" => 9000', '"port" => %d' % backend_port(server))]


@pytest.mark.parametrize('name, bind', [('lighttpd-tcp', 'tcp'), ('lighttpd-unix', 'unix')])
def test_lighttpd_docs_root(server_factory, start_web_server, workdir, name, bind):
    server = server_factory('threaded', 'echo', bind=bind)
    lighttpd = start_web_server(LighttpdWithBlock(
        doc_block('lighttpd.md', name), lighttpd_replacements(server),
        workdir=os.path.join(workdir, 'lighttpd')))
    check_echo(lighttpd.url, '/a/b', '', '/a/b')


def test_lighttpd_docs_prefix(server_factory, start_web_server, workdir):
    server = server_factory('threaded', 'echo', bind='tcp')
    lighttpd = start_web_server(LighttpdWithBlock(
        doc_block('lighttpd.md', 'lighttpd-prefix'), lighttpd_replacements(server),
        workdir=os.path.join(workdir, 'lighttpd')))
    check_echo(lighttpd.url, '/myapp/a/b', '/myapp', '/a/b')
    check_echo(lighttpd.url, '/myapp', '/myapp', '')
    # The condition keeps a longer first segment away from the application.
    status, headers, body = webservers.http_get(lighttpd.url + '/myapplication/x')
    assert status == 404


ERRORS_WRITING_APP = """
from apps import echo


def application(environ, start_response):
    environ['wsgi.errors'].write('line from wsgi.errors\\n')
    return echo(environ, start_response)
"""


def read_text(path):
    """Return the file at ``path`` decoded as UTF-8, or '' when it does not exist."""
    try:
        with io.open(path, 'rb') as text_file:
            return text_file.read().decode('utf-8', 'replace')
    except IOError:
        return u''


@pytest.mark.parametrize('log_to', ['file', 'stderr'])
def test_lighttpd_docs_bin_path(app_dir, server_python, start_web_server, workdir, log_to):
    """Run the bin-path block with lighttpd -D and check where each kind of line goes.

    The daemonized case (standard error on /dev/null) is not run here.
    """
    socket_dir = tempfile.mkdtemp(prefix='flup-lighttpd-', dir=app_dir)
    log_path = os.path.join(socket_dir, 'flup.log')
    write_text(os.path.join(app_dir, 'myapp', 'wsgi.py'), ERRORS_WRITING_APP)
    replacements = [
        ('/run/lighttpd/flup-myapp.sock', unix_socket_path(socket_dir, 'spawned.sock')),
        (EXAMPLE_APP_DIR, app_dir),
        (EXAMPLE_PYTHON, server_python),
        # flup is not installed here: lighttpd passes PYTHONPATH to the child.
        ('"FLUP_MULTIPLEXED" => "0",', '"FLUP_MULTIPLEXED" => "0", "PYTHONPATH" => "%s",'
         % os.pathsep.join([REPO_ROOT, SUPPORT_DIR])),
    ]
    if log_to == 'file':
        replacements.append((EXAMPLE_LOG_FILE, log_path))
    else:
        replacements.append(('"MYAPP_LOG_FILE" => "%s",' % EXAMPLE_LOG_FILE, ''))
    lighttpd = LighttpdWithBlock(doc_block('lighttpd.md', 'lighttpd-bin-path'), replacements,
                                 workdir=os.path.join(workdir, 'lighttpd'))
    start_web_server(lighttpd)
    check_echo(lighttpd.url, '/spawned/x', '', '/spawned/x')

    started_line = 'serving FastCGI on the socket on descriptor 0'
    launcher_log = log_path if log_to == 'file' else lighttpd.output_path
    assert procinfo.wait_until(lambda: started_line in read_text(launcher_log), 10)
    # bin-environment reached the process: FLUP_MULTIPLEXED=0 chose the mode.
    assert 'multiplexing off (set by FLUP_MULTIPLEXED)' in read_text(launcher_log)
    assert 'flup.access' in read_text(launcher_log)
    # lighttpd's error log gets the FastCGI stderr stream, never the process's stderr.
    error_log = read_text(lighttpd.error_log_path)
    assert 'FastCGI-stderr:line from wsgi.errors' in error_log
    assert started_line not in error_log
    assert 'flup.access' not in error_log


# -- apache.md --------------------------------------------------------------------------

@pytest.mark.parametrize('name, bind', [('apache-tcp', 'tcp'), ('apache-unix', 'unix')])
def test_apache_docs_root(server_factory, start_web_server, shared_dir, workdir, name, bind):
    # httpd's worker runs as www-data, so the socket is in a folder it may
    # search and has mode 0777 (umask 0).
    server = server_factory('threaded', 'echo', bind=bind, workdir=shared_dir, kw={'umask': 0})
    if bind == 'unix':
        replacements = [(EXAMPLE_SOCKET, server.address)]
    else:
        replacements = [(EXAMPLE_TCP, '127.0.0.1:%d' % backend_port(server))]
    apache = start_web_server(ApacheWithBlock(doc_block('apache.md', name), replacements,
                                              shared_dir, workdir=os.path.join(workdir, 'apache')))
    check_echo(apache.url, '/a/b', '', '/a/b')
    check_echo(apache.url, '/a%20b', '', '/a b')
    # enablereuse=on: httpd keeps its connection for the next request.
    assert procinfo.wait_until(lambda: len(fastcgi_connections(server)) == 1, 10)


def test_apache_docs_prefix(server_factory, start_web_server, shared_dir, workdir):
    server = server_factory('threaded', 'echo', bind='tcp')
    with io.open(os.path.join(shared_dir, 'static.txt'), 'wb') as static:
        static.write(b'static file\n')
    os.chmod(os.path.join(shared_dir, 'static.txt'), 0o644)
    apache = start_web_server(ApacheWithBlock(
        doc_block('apache.md', 'apache-prefix'),
        [(EXAMPLE_TCP, '127.0.0.1:%d' % backend_port(server))],
        shared_dir, workdir=os.path.join(workdir, 'apache')))
    check_echo(apache.url, '/myapp/a/b', '/myapp', '/a/b')
    check_echo(apache.url, '/myapp/', '/myapp', '/')
    check_large_post(apache.url, '/myapp/upload')

    # Like the nginx prefix block: /myapp redirects to /myapp/.
    status, headers, body = webservers.http_get(apache.url + '/myapp')
    assert status == 301
    assert headers['location'].endswith('/myapp/')
    # Other paths stay with httpd.
    status, headers, body = webservers.http_get(apache.url + '/static.txt')
    assert status == 200
    assert body == b'static file\n'
