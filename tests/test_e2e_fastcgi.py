"""End-to-end FastCGI tests through real web servers and the reference client.

Each test starts flup with ``tests/support/serve.py`` and puts a real
client in front of it: nginx (``fastcgi_pass``), lighttpd (mod_fastcgi),
Apache httpd (mod_proxy_fcgi) or ``cgi-fcgi`` from Debian's libfcgi-bin,
the FastCGI reference library's client.  The server variants are the
threaded server with multiplexing off and on, the prefork server and the
single-connection server.  None of these clients multiplexes requests, so
the multiplexed variant checks that the server still serves them.

The full variant x socket matrix runs for the cheap request checks.  Checks
that do not depend on the socket type (error page, SCRIPT_NAME/PATH_INFO)
run each variant over one socket type.
"""

from __future__ import absolute_import, print_function

import hashlib
import json
import os
import shutil
import stat
import tempfile

import pytest

from tests.support import procinfo, webservers
from tests.support.servers import SERVE_SCRIPT

pytestmark = pytest.mark.e2e

# (serve.py model, multiplexed), with the pytest id.
VARIANTS = [
    pytest.param(('threaded', False), id='threaded'),
    pytest.param(('threaded', True), id='threaded-mux'),
    pytest.param(('prefork', False), id='prefork'),
    pytest.param(('single', False), id='single'),
]

ONE_MIB = 1 << 20
STREAM_QUERY = 'n=40&size=65536'  # 40 chunks of 64 KiB: 2.5 MiB
STREAM_SIZE = 40 * 65536
SECRET = 'boom-secret'  # the message of the exception that the 'raise' app raises
SEQUENTIAL_REQUESTS = 5
SETTLE_SECONDS = 10.0  # upper bound for a connection to appear or close


@pytest.fixture(params=VARIANTS)
def variant(request):
    """(model, multiplexed) of the flup server under test."""
    return request.param


@pytest.fixture
def start_flup(server_factory, variant):
    """Start a flup server of the current variant: ``start_flup(app, bind)``."""
    model, multiplexed = variant

    def start(app, bind='tcp', **options):
        return server_factory(model, app, bind=bind, multiplexed=multiplexed, **options)

    return start


@pytest.fixture
def shared_dir(request):
    """A folder that other users may traverse, for sockets that Apache (www-data) opens.

    pytest's own temporary folders are private to root.
    """
    path = tempfile.mkdtemp(prefix='flup-e2e-')
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def load_json(body):
    return json.loads(body.decode('utf-8'))


def sha1_hex(data):
    return hashlib.sha1(data).hexdigest()


# -- FastCGI connections held by the server, read from /proc -------------------

def _socket_inodes(pids):
    """Return the inodes (as str) of every socket that the processes ``pids`` have open."""
    inodes = set()
    for pid in pids:
        fd_dir = '/proc/%d/fd' % pid
        try:
            entries = os.listdir(fd_dir)
        except OSError:  # the process exited
            continue
        for entry in entries:
            try:
                target = os.readlink(os.path.join(fd_dir, entry))
            except OSError:
                continue
            if target.startswith('socket:['):
                inodes.add(target[len('socket:['):-1])
    return inodes


def _read_proc_table(pid, name):
    try:
        with open('/proc/%d/net/%s' % (pid, name)) as table:
            return [line.split() for line in table.readlines()[1:]]
    except (IOError, OSError):
        return []


def _connected_inodes(pid, address):
    """Return the inodes of connected sockets whose local address is ``address``.

    For TCP these are ESTABLISHED sockets on the listening port.  For a Unix
    socket they are accepted sockets: /proc/net/unix lists them with the
    path of their listening socket and state 03 (connected).
    """
    if isinstance(address, str):
        return set(fields[6] for fields in _read_proc_table(pid, 'unix')
                   if len(fields) >= 8 and fields[7] == address and fields[5] == '03')
    port = address[1]
    inodes = set()
    for name in ('tcp', 'tcp6'):
        for fields in _read_proc_table(pid, name):
            local_port = int(fields[1].rsplit(':', 1)[1], 16)
            if local_port == port and fields[3] == '01':
                inodes.add(fields[9])
    return inodes


def fastcgi_connections(server):
    """Return the inodes of the FastCGI connections that the server's processes hold now."""
    pids = [server.pid] + procinfo.descendant_pids(server.pid)
    return _socket_inodes(pids) & _connected_inodes(server.pid, server.address)


def wait_for_connections(server, count):
    """Wait until the server has ``count`` FastCGI connections open; return their inodes."""
    procinfo.wait_until(lambda: len(fastcgi_connections(server)) == count, SETTLE_SECONDS)
    return fastcgi_connections(server)


def wait_for_text(read_text, text, timeout=SETTLE_SECONDS):
    """Wait until ``text`` is in ``read_text()``; return the last text read."""
    procinfo.wait_until(lambda: text in read_text(), timeout)
    return read_text()


# -- shared request checks -------------------------------------------------------

def check_get(url):
    """GET with a query string and request headers through a web server to the echo app."""
    status, headers, body = webservers.http_get(
        url + '/items/42?a=1&b=x%20y', headers={'X-Test': 'value-1', 'User-Agent': 'flup-e2e/1'})
    assert status == 200
    document = load_json(body)
    assert document['method'] == 'GET'
    assert document['path'] == '/items/42'
    assert document['QUERY_STRING'] == 'a=1&b=x%20y'
    assert document['headers']['HTTP_X_TEST'] == 'value-1'
    assert document['headers']['HTTP_USER_AGENT'] == 'flup-e2e/1'
    assert document['headers']['REQUEST_URI'] == '/items/42?a=1&b=x%20y'
    assert document['body_length'] == 0


def check_post(url):
    """POST a 1 MiB random body to the echo app; its SHA-1 must come back."""
    body = os.urandom(ONE_MIB)
    status, headers, response = webservers.http_post(
        url + '/upload', body, headers={'Content-Type': 'application/octet-stream'})
    assert status == 200
    document = load_json(response)
    assert document['method'] == 'POST'
    assert document['headers']['CONTENT_TYPE'] == 'application/octet-stream'
    assert document['headers']['CONTENT_LENGTH'] == str(ONE_MIB)
    assert document['body_length'] == ONE_MIB
    assert document['body_sha1'] == sha1_hex(body)


def check_stream(url):
    """GET 2.5 MiB from the stream app, written by the app in 64 KiB chunks."""
    status, headers, body = webservers.http_get(url + '/stream?' + STREAM_QUERY)
    assert status == 200
    assert headers['content-length'] == str(STREAM_SIZE)
    assert len(body) == STREAM_SIZE
    assert body == b'x' * STREAM_SIZE


# -- nginx -----------------------------------------------------------------------

@pytest.mark.parametrize('bind', ['tcp', 'unix'])
@pytest.mark.parametrize('keep_conn', [False, True], ids=['close', 'keep-conn'])
def test_nginx_get_post(start_flup, nginx_factory, backend_of, bind, keep_conn):
    server = start_flup('echo', bind)
    nginx = nginx_factory(fastcgi=backend_of(server), keep_conn=keep_conn)
    check_get(nginx.url)
    check_post(nginx.url)


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_streamed_response(start_flup, nginx_factory, backend_of, bind):
    server = start_flup('stream', bind)
    nginx = nginx_factory(fastcgi=backend_of(server), keep_conn=True)
    check_stream(nginx.url)
    check_stream(nginx.url)


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_keep_conn_reuses_connection(start_flup, nginx_factory, backend_of, bind):
    server = start_flup('echo', bind)
    # The readiness probe of ServerProcess opened and closed one connection.
    assert wait_for_connections(server, 0) == set()
    nginx = nginx_factory(fastcgi=backend_of(server), keep_conn=True)
    seen = []
    for number in range(SEQUENTIAL_REQUESTS):
        status, headers, body = webservers.http_get(nginx.url + '/kept/%d' % number)
        assert status == 200
        assert load_json(body)['path'] == '/kept/%d' % number
        seen.append(wait_for_connections(server, 1))
    assert len(seen[0]) == 1
    assert all(inodes == seen[0] for inodes in seen), 'connections per request: %r' % seen
    # A graceful nginx stop closes its idle upstream connections; flup then closes its side.
    nginx.stop()
    assert wait_for_connections(server, 0) == set()


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_without_keep_conn_closes(start_flup, nginx_factory, backend_of, bind):
    server = start_flup('echo', bind)
    nginx = nginx_factory(fastcgi=backend_of(server), keep_conn=False)
    for number in range(3):
        status, headers, body = webservers.http_get(nginx.url + '/closed/%d' % number)
        assert status == 200
        # Without FCGI_KEEP_CONN the application side closes the connection.
        assert wait_for_connections(server, 0) == set()


def test_nginx_app_error_page(start_flup, nginx_factory, backend_of):
    server = start_flup('raise', 'unix')
    nginx = nginx_factory(fastcgi=backend_of(server), keep_conn=True)
    status, headers, body = webservers.http_get(nginx.url + '/fails')
    assert status == 500
    assert SECRET.encode('ascii') not in body
    assert b'Traceback' not in body
    assert b'Internal Server Error' in body
    # The traceback reaches nginx as FCGI_STDERR, which nginx writes to its error log.
    error_log = wait_for_text(nginx.error_log_text, SECRET)
    assert 'FastCGI sent in stderr' in error_log
    assert SECRET in error_log
    # flup also logs the traceback at ERROR level under the 'flup' logger.
    server_log = wait_for_text(server.log_text, SECRET)
    assert ' ERROR flup.' in server_log
    assert 'Traceback' in server_log
    assert 'RuntimeError: %s' % SECRET in server_log
    # The kept connection still serves the next request.
    status, headers, body = webservers.http_get(nginx.url + '/fails-again')
    assert status == 500


# (case, nginx script_name, nginx path_info mode, request path, expected
# SCRIPT_NAME, expected PATH_INFO)
PATH_CASES = [
    ('root-uri', '', 'uri', '/a/b', '', '/a/b'),
    ('root-omit', '', 'omit', '/a/b', '', '/a/b'),
    ('prefix-split', '/app', 'uri', '/app/a/b', '/app', '/a/b'),
    ('prefix-omit', '/app', 'omit', '/app/a/b', '/app', '/a/b'),
    ('prefix-omit-bare', '/app', 'omit', '/app', '/app', ''),
    ('prefix-omit-quoted', '/app', 'omit', '/app/a%20b', '/app', '/a b'),
    ('prefix-omit-not-segment', '/app', 'omit', '/application/x', '/app', '/application/x'),
    ('rewrite-omit', '/dispatch.fcgi', 'omit', '/blog/post/12345', '/dispatch.fcgi',
     '/blog/post/12345'),
]


def test_nginx_script_name_path_info(start_flup, nginx_factory, backend_of):
    server = start_flup('echo', 'tcp')
    for name, script_name, path_info, path, expected_script, expected_path in PATH_CASES:
        nginx = nginx_factory(fastcgi=backend_of(server), script_name=script_name,
                              path_info=path_info)
        log_start = len(server.log_text())
        for _ in range(2):
            status, headers, body = webservers.http_get(nginx.url + path + '?q=1')
            assert status == 200, name
            document = load_json(body)
            assert document['SCRIPT_NAME'] == expected_script, name
            assert document['PATH_INFO'] == expected_path, name
            assert document['QUERY_STRING'] == 'q=1', name
        nginx.stop()
        # A SCRIPT_NAME that is not a prefix of the path is a normal set-up
        # (a rewrite in front), so it must not log a warning per request.
        new_log = server.log_text()[log_start:]
        warnings = [line for line in new_log.splitlines() if ' WARNING ' in line]
        assert warnings == [], name


# -- cgi-fcgi (libfcgi's client) ---------------------------------------------------

CGI_PARAMS = {
    'GATEWAY_INTERFACE': 'CGI/1.1',
    'REQUEST_METHOD': 'GET',
    'SCRIPT_NAME': '',
    'PATH_INFO': '/items/42',
    'QUERY_STRING': 'a=1&b=2',
    'REQUEST_URI': '/items/42?a=1&b=2',
    'SERVER_NAME': 'localhost',
    'SERVER_PORT': '80',
    'SERVER_PROTOCOL': 'HTTP/1.1',
    'HTTP_X_TEST': 'from-cgi-fcgi',
}


@pytest.mark.parametrize('bind', ['tcp', 'unix', 'fd0', 'fd0-unix'])
def test_cgi_fcgi_get_post(start_flup, bind):
    server = start_flup('echo', bind)
    output = webservers.cgi_fcgi(server.address, CGI_PARAMS)
    status, headers, body = webservers.parse_cgi_response(output)
    assert status == 200
    document = load_json(body)
    assert document['method'] == 'GET'
    assert document['path'] == '/items/42'
    assert document['QUERY_STRING'] == 'a=1&b=2'
    assert document['headers']['HTTP_X_TEST'] == 'from-cgi-fcgi'

    payload = os.urandom(ONE_MIB)
    params = dict(CGI_PARAMS, REQUEST_METHOD='POST', CONTENT_TYPE='application/octet-stream')
    output = webservers.cgi_fcgi(server.address, params, body=payload)
    status, headers, body = webservers.parse_cgi_response(output)
    assert status == 200
    document = load_json(body)
    assert document['method'] == 'POST'
    assert document['body_length'] == ONE_MIB
    assert document['body_sha1'] == sha1_hex(payload)


def test_cgi_fcgi_streamed_response(start_flup):
    server = start_flup('stream', 'unix')
    params = dict(CGI_PARAMS, PATH_INFO='/stream', QUERY_STRING=STREAM_QUERY)
    output = webservers.cgi_fcgi(server.address, params)
    status, headers, body = webservers.parse_cgi_response(output)
    assert status == 200
    assert headers['content-length'] == str(STREAM_SIZE)
    assert body == b'x' * STREAM_SIZE


def test_cgi_fcgi_app_error(start_flup):
    server = start_flup('raise', 'tcp')
    address = '%s:%d' % server.address
    returncode, stdout, stderr = webservers.run_command(
        [webservers.CGI_FCGI, '-bind', '-connect', address], env=CGI_PARAMS, timeout=30)
    assert returncode == 0
    status, headers, body = webservers.parse_cgi_response(stdout)
    assert status == 500
    assert SECRET.encode('ascii') not in body
    # cgi-fcgi copies FCGI_STDERR to its own standard error.
    assert b'Traceback' in stderr
    assert SECRET.encode('ascii') in stderr


# -- Apache httpd mod_proxy_fcgi --------------------------------------------------

# flup derives PATH_INFO from REQUEST_URI when SCRIPT_NAME is set and
# PATH_INFO is absent; mod_proxy_fcgi would otherwise send the whole path
# as SCRIPT_NAME.
APACHE_ROOT_APP = '\n'.join([
    'ProxyFCGISetEnvIf "true" SCRIPT_NAME ""',
    'ProxyFCGISetEnvIf "true" !PATH_INFO',
])


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_apache_get_post(start_flup, apache_factory, backend_of, shared_dir, bind):
    # Apache's worker runs as www-data: the socket must be reachable and writable for it.
    server = start_flup('echo', bind, workdir=shared_dir, kw={'umask': 0})
    apache = apache_factory(backend_of(server), proxy='fcgi', extra_config=APACHE_ROOT_APP)
    check_get(apache.url)
    check_post(apache.url)


# -- lighttpd mod_fastcgi --------------------------------------------------------

def test_lighttpd_host_port(start_flup, lighttpd_factory, backend_of):
    server = start_flup('echo', 'tcp')
    lighttpd = lighttpd_factory(fastcgi=backend_of(server))
    check_get(lighttpd.url)
    check_post(lighttpd.url)


def test_lighttpd_bin_path_spawns_fd0(lighttpd_factory, server_python, variant):
    model, multiplexed = variant
    command = [server_python, SERVE_SCRIPT, '--model', model, '--bind', 'fd0', '--app', 'echo']
    if multiplexed:
        command.append('--multiplexed')
    lighttpd = lighttpd_factory(bin_path=command)
    check_get(lighttpd.url)
    check_post(lighttpd.url)
    # lighttpd writes the spawned server's standard error to its error log.
    log = wait_for_text(lighttpd.error_log_text, 'serving FastCGI on the socket on descriptor 0')
    assert 'serving FastCGI on the socket on descriptor 0' in log


def test_lighttpd_app_error_page(server_factory, lighttpd_factory, backend_of):
    server = server_factory('threaded', 'raise', bind='tcp')
    lighttpd = lighttpd_factory(fastcgi=backend_of(server))
    status, headers, body = webservers.http_get(lighttpd.url + '/fails')
    assert status == 500
    assert SECRET.encode('ascii') not in body
    # lighttpd writes FCGI_STDERR to its error log, one line per line of text.
    error_log = wait_for_text(lighttpd.error_log_text, SECRET)
    assert 'FastCGI-stderr' in error_log
    assert 'RuntimeError: %s' % SECRET in error_log


def test_apache_app_error_page(server_factory, apache_factory, backend_of):
    server = server_factory('threaded', 'raise', bind='tcp')
    apache = apache_factory(backend_of(server), proxy='fcgi')
    status, headers, body = webservers.http_get(apache.url + '/fails')
    assert status == 500
    assert SECRET.encode('ascii') not in body
    # mod_proxy_fcgi writes FCGI_STDERR to the error log.
    error_log = wait_for_text(apache.error_log_text, SECRET)
    assert 'AH01071' in error_log
    assert SECRET in error_log
