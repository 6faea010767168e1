"""Tests of the test infrastructure itself, run against upstream flup.

Upstream (1.0.3 on Python 3, 1.0.2 on Python 2.7) comes from PyPI through
the ``upstream_target`` fixture, so these tests pass before this project's
servers exist and show that serve.py, the web server wrappers and the
resource counters work.  A missing web server binary fails the test.
"""

from __future__ import absolute_import, print_function

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support import apps, procinfo, serve, webservers
from tests.support.servers import ServerStartError, free_port
from tests.conftest import backend_address

CGI_PARAMS = {
    'REQUEST_METHOD': 'GET',
    'SCRIPT_NAME': '',
    'PATH_INFO': '/infra',
    'QUERY_STRING': 'a=1',
    'SERVER_NAME': 'localhost',
    'SERVER_PORT': '80',
    'SERVER_PROTOCOL': 'HTTP/1.1',
    'REQUEST_URI': '/infra?a=1',
}


def post_params(length):
    params = dict(CGI_PARAMS, REQUEST_METHOD='POST', CONTENT_LENGTH=str(length))
    params['CONTENT_TYPE'] = 'application/octet-stream'
    return params


# -- serve.py argument parsing -------------------------------------------------


@pytest.mark.parametrize(
    'text, expected',
    [
        ('4', 4),
        ('1.5', 1.5),
        ('true', True),
        ('False', False),
        ('none', None),
        ('0o22', 0o22),
        ('022', 22),
        ('name', 'name'),
    ],
)
def test_serve_parse_value(text, expected):
    assert serve.parse_value(text) == expected
    assert type(serve.parse_value(text)) is type(expected)


@pytest.mark.parametrize(
    'text, expected',
    [
        ('127.0.0.1:9000', ('127.0.0.1', 9000)),
        ('[::1]:9000', ('::1', 9000, 0, 0)),
        ('unix:/tmp/x.sock', '/tmp/x.sock'),
        ('fd0', None),
    ],
)
def test_serve_parse_bind(text, expected):
    assert serve.parse_bind(text) == expected


@pytest.mark.parametrize('text', ['9000', 'host:', 'unix:', 'host:port'])
def test_serve_parse_bind_invalid(text):
    with pytest.raises(Exception) as error:
        serve.parse_bind(text)
    assert text in str(error.value)


# -- apps.py, called in-process ------------------------------------------------


def call_app(name, environ_overrides=None, body=b''):
    from io import BytesIO

    environ = {
        'REQUEST_METHOD': 'GET',
        'SCRIPT_NAME': '',
        'PATH_INFO': '/',
        'QUERY_STRING': '',
        'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'CONTENT_LENGTH': str(len(body)),
        'wsgi.input': BytesIO(body),
        'wsgi.errors': sys.stderr,
    }
    environ.update(environ_overrides or {})
    captured = []

    def start_response(status, headers, exc_info=None):
        captured.append((status, headers))

    result = b''.join(apps.get_app(name)(environ, start_response))
    return captured[0][0], dict(captured[0][1]), result


def test_app_echo_reports_body_digest():
    status, headers, body = call_app('echo', {'REQUEST_METHOD': 'POST'}, body=b'abc')
    document = json.loads(body.decode('utf-8'))
    assert status == '200 OK'
    assert document['method'] == 'POST'
    assert document['body_length'] == 3
    assert document['body_sha1'] == hashlib.sha1(b'abc').hexdigest()


def test_app_stream_sizes():
    status, headers, body = call_app('stream', {'QUERY_STRING': 'n=3&size=10'})
    assert status == '200 OK'
    assert headers['Content-Length'] == '30'
    assert body == b'x' * 30


def test_app_read_body_reports_io_error():
    class BrokenInput(object):
        def read(self, size=-1):
            raise IOError('connection reset')

    status, headers, body = call_app('read_body', {'wsgi.input': BrokenInput()})
    assert status.startswith('400')
    assert body.strip() in (b'IOError', b'OSError')


def test_app_raise_raises():
    with pytest.raises(RuntimeError):
        call_app('raise')


def test_app_unknown_name():
    with pytest.raises(KeyError) as error:
        apps.get_app('no-such-app')
    assert 'hello' in str(error.value)


# -- procinfo ------------------------------------------------------------------

THREADS_SCRIPT = textwrap.dedent('''
    import socket, sys, threading, time
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(5)
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    client.close()  # leaves 'accepted' in CLOSE_WAIT
    event = threading.Event()
    for _ in range(4):
        thread = threading.Thread(target=event.wait, args=(30,))
        thread.daemon = True
        thread.start()
    sys.stdout.write('ready\\n')
    sys.stdout.flush()
    time.sleep(30)
''')

FORK_SCRIPT = textwrap.dedent('''
    import os, sys, time
    for _ in range(2):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
    sys.stdout.write('ready\\n')
    sys.stdout.flush()
    time.sleep(30)
''')


def start_script(source):
    process = subprocess.Popen(
        [sys.executable, '-c', source], stdout=subprocess.PIPE, preexec_fn=os.setsid
    )
    line = process.stdout.readline()
    assert line.strip() == b'ready'
    return process


def kill_session(process):
    for pid in procinfo.session_pids(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    process.wait()


def test_procinfo_counts_threads_and_sockets():
    process = start_script(THREADS_SCRIPT)
    try:
        assert procinfo.thread_count(process.pid) == 5
        assert procinfo.fd_count(process.pid) >= 5
        states = procinfo.socket_states(process.pid)
        assert states['LISTEN'] == 1
        assert states['CLOSE_WAIT'] == 1
    finally:
        kill_session(process)


def test_procinfo_tree_stats_children():
    process = start_script(FORK_SCRIPT)
    try:
        children = procinfo.wait_until(
            lambda: len(procinfo.child_pids(process.pid)) == 2, 5
        )
        assert children
        stats = procinfo.tree_stats(process.pid)
        assert len(stats['children']) == 2
        assert stats['threads'] == 3
        assert set(stats['processes']) == set([process.pid] + stats['children'])
        assert sorted(procinfo.session_pids(process.pid)) == sorted(
            [process.pid] + stats['children']
        )
    finally:
        kill_session(process)


def test_procinfo_gone_process_counts_zero():
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    assert procinfo.thread_count(process.pid) == 0
    assert procinfo.fd_count(process.pid) == 0
    assert procinfo.tree_stats(process.pid)['threads'] == 0


def test_wait_until_returns_last_value():
    values = iter(range(100))
    started = time.time()
    result = procinfo.wait_until(lambda: next(values) >= 3, timeout=5, interval=0.01)
    assert result is True
    assert procinfo.wait_until(lambda: 0, timeout=0.2, interval=0.05) == 0
    assert time.time() - started < 5


# -- ServerProcess with upstream and cgi-fcgi ----------------------------------


@pytest.mark.parametrize(
    'bind', ['tcp', 'unix', 'fd0', 'fd0-unix', 'spawn-fcgi', 'spawn-fcgi-unix']
)
def test_cgi_fcgi_against_upstream(server_factory, upstream_target, bind):
    server = server_factory('threaded', 'echo', bind=bind, target=upstream_target)
    body = b'0123456789' * 1000
    output = webservers.cgi_fcgi(server.address, post_params(len(body)), body=body)
    status, headers, response = webservers.parse_cgi_response(output)
    document = json.loads(response.decode('utf-8'))
    assert status == 200
    assert document['body_length'] == len(body)
    assert document['body_sha1'] == hashlib.sha1(body).hexdigest()
    assert document['PATH_INFO'] == '/infra'


def test_server_process_tcp6_accepts(server_factory, upstream_target):
    if upstream_target.endswith('1.0.2'):
        # Upstream 1.0.2 asserts that a TCP bindAddress has two items.
        with pytest.raises(ServerStartError) as error:
            server_factory('threaded', 'hello', bind='tcp6', target=upstream_target)
        assert 'AssertionError' in str(error.value)
        return
    server = server_factory('threaded', 'hello', bind='tcp6', target=upstream_target)
    connection = server.connect()
    connection.close()
    assert server.address[0] == '::1'


@pytest.mark.parametrize('model', ['threaded', 'single'])
def test_server_process_stops_cleanly(server_factory, upstream_target, model):
    server = server_factory(model, 'hello', target=upstream_target)
    assert server.is_running()
    assert server.stop(timeout=10)
    assert server.exited_cleanly
    assert server.returncode == 0
    assert 'run() returned' in server.log_text()


def test_server_process_prefork_children_reaped(server_factory, upstream_target):
    server = server_factory(
        'prefork', 'hello', target=upstream_target, kw={'minSpare': 1, 'maxSpare': 2}
    )
    children = procinfo.wait_until(lambda: procinfo.child_pids(server.pid), 5)
    assert children
    server.stop(timeout=5)
    # Whether upstream exits in time or not, no process of its session survives.
    assert procinfo.session_pids(server.pid) == []


def test_server_process_retries_taken_port(
    server_factory, upstream_target, monkeypatch
):
    from tests.support import servers

    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(('127.0.0.1', 0))
    blocker.listen(1)
    taken_port = blocker.getsockname()[1]
    ports = [taken_port]
    real_free_port = servers.free_port

    def first_port_taken(host='127.0.0.1'):
        return ports.pop() if ports else real_free_port(host)

    monkeypatch.setattr(servers, 'free_port', first_port_taken)
    try:
        server = server_factory('threaded', 'hello', target=upstream_target)
    finally:
        blocker.close()
    assert server.address[1] != taken_port
    assert server.address[1] in procinfo.listening_ports(server.pid)


def test_server_process_bad_target(server_factory, workdir):
    empty = os.path.join(workdir, 'empty-target')
    os.makedirs(empty)
    with pytest.raises(ServerStartError) as error:
        server_factory('threaded', 'hello', target=empty, ready_timeout=10)
    assert 'serve.py exited' in str(error.value)


def test_serve_rejects_multiplexed_scgi(upstream_target):
    argv = [
        sys.executable,
        serve.__file__.replace('.pyc', '.py'),
        '--model',
        'scgi-threaded',
        '--bind',
        '127.0.0.1:%d' % free_port(),
        '--multiplexed',
        '--app',
        'hello',
    ]
    environ = dict(os.environ, FLUP_TEST_TARGET=upstream_target)
    returncode, stdout, stderr = webservers.run_command(argv, env=environ, timeout=30)
    assert returncode == 2
    assert b'--multiplexed applies to the FastCGI models only' in stderr


# -- real web servers in front of upstream -------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_fastcgi_hello(server_factory, nginx_factory, upstream_target, bind):
    server = server_factory('threaded', 'hello', bind=bind, target=upstream_target)
    nginx = nginx_factory(fastcgi=backend_address(server))
    status, headers, body = webservers.http_get(nginx.url + '/hello')
    assert status == 200
    assert body == b'Hello, world!\n'
    assert headers['content-type'].startswith('text/plain')


@pytest.mark.e2e
def test_nginx_fastcgi_ipv6_backend(server_factory, nginx_factory, upstream_target):
    if upstream_target.endswith('1.0.2'):
        pytest.skip('upstream flup 1.0.2 cannot bind IPv6 addresses')
    server = server_factory('threaded', 'hello', bind='tcp6', target=upstream_target)
    nginx = nginx_factory(fastcgi=backend_address(server))
    status, headers, body = webservers.http_get(nginx.url + '/v6')
    assert status == 200
    assert body == b'Hello, world!\n'


@pytest.mark.e2e
def test_apache_proxy_fcgi_ipv6_backend(
    server_factory, apache_factory, upstream_target
):
    if upstream_target.endswith('1.0.2'):
        pytest.skip('upstream flup 1.0.2 cannot bind IPv6 addresses')
    server = server_factory('threaded', 'hello', bind='tcp6', target=upstream_target)
    apache = apache_factory(backend_address(server), proxy='fcgi')
    status, headers, body = webservers.http_get(apache.url + '/v6')
    assert status == 200
    assert body == b'Hello, world!\n'


@pytest.mark.e2e
def test_nginx_script_name_split(server_factory, nginx_factory, upstream_target):
    server = server_factory('threaded', 'echo', target=upstream_target)
    nginx = nginx_factory(fastcgi=backend_address(server), script_name='/app')
    status, headers, body = webservers.http_get(nginx.url + '/app/a/b?x=1')
    document = json.loads(body.decode('utf-8'))
    assert status == 200
    assert document['SCRIPT_NAME'] == '/app'
    assert document['PATH_INFO'] == '/a/b'
    assert document['QUERY_STRING'] == 'x=1'
    assert document['headers']['REQUEST_URI'] == '/app/a/b?x=1'


@pytest.mark.e2e
def test_nginx_post_body_and_keep_conn(server_factory, nginx_factory, upstream_target):
    server = server_factory('threaded', 'echo', target=upstream_target)
    nginx = nginx_factory(fastcgi=backend_address(server), keep_conn=True)
    body = os.urandom(200000)
    for _ in range(3):
        status, headers, response = webservers.http_post(nginx.url + '/post', body)
        document = json.loads(response.decode('utf-8'))
        assert status == 200
        assert document['body_sha1'] == hashlib.sha1(body).hexdigest()
    states = procinfo.socket_states(server.pid)
    # One kept FastCGI connection plus the listening socket.
    assert states['ESTABLISHED'] >= 1


@pytest.mark.e2e
def test_nginx_survives_client_abort(server_factory, nginx_factory, upstream_target):
    server = server_factory('threaded', 'read_body', target=upstream_target)
    nginx = nginx_factory(fastcgi=backend_address(server), request_buffering=False)
    received = webservers.abort_http(
        nginx.url + '/upload', 0.3, content_length=100, body=b'0123456789'
    )
    assert received == b''
    status, headers, body = webservers.http_post(nginx.url + '/upload', b'z' * 50)
    assert status == 200
    assert body == b'50\n'


@pytest.mark.e2e
def test_nginx_scgi_echo(server_factory, nginx_factory, upstream_target):
    server = server_factory('scgi-threaded', 'echo', target=upstream_target)
    nginx = nginx_factory(scgi=backend_address(server))
    status, headers, body = webservers.http_get(nginx.url + '/s?q=2')
    document = json.loads(body.decode('utf-8'))
    assert status == 200
    assert document['QUERY_STRING'] == 'q=2'

    status, headers, body = webservers.http_post(nginx.url + '/s', b'abcde')
    document = json.loads(body.decode('utf-8'))
    assert status == 200
    assert document['body_length'] == 5


@pytest.mark.e2e
@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_lighttpd_fastcgi_echo(server_factory, lighttpd_factory, upstream_target, bind):
    server = server_factory('threaded', 'echo', bind=bind, target=upstream_target)
    lighttpd = lighttpd_factory(fastcgi=backend_address(server))
    status, headers, body = webservers.http_get(lighttpd.url + '/a/b?c=d')
    document = json.loads(body.decode('utf-8'))
    assert status == 200
    assert document['SCRIPT_NAME'] == ''
    assert document['PATH_INFO'] == '/a/b'


@pytest.mark.e2e
def test_lighttpd_spawns_serve_fd0(lighttpd_factory, upstream_target, server_python):
    command = [
        server_python,
        serve.__file__.replace('.pyc', '.py'),
        '--model',
        'threaded',
        '--bind',
        'fd0',
        '--app',
        'hello',
    ]
    lighttpd = lighttpd_factory(
        bin_path=command, bin_environment={'FLUP_TEST_TARGET': upstream_target}
    )
    status, headers, body = webservers.http_get(lighttpd.url + '/spawned')
    assert status == 200
    assert body == b'Hello, world!\n'


@pytest.mark.e2e
def test_lighttpd_scgi_hello(server_factory, lighttpd_factory, upstream_target):
    server = server_factory('scgi-threaded', 'hello', target=upstream_target)
    lighttpd = lighttpd_factory(scgi=backend_address(server))
    status, headers, body = webservers.http_get(lighttpd.url + '/s')
    assert status == 200
    assert body == b'Hello, world!\n'


@pytest.mark.e2e
def test_apache_proxy_fcgi_hello(server_factory, apache_factory, upstream_target):
    server = server_factory('threaded', 'hello', target=upstream_target)
    apache = apache_factory(backend_address(server), proxy='fcgi')
    status, headers, body = webservers.http_get(apache.url + '/hello')
    assert status == 200
    assert body == b'Hello, world!\n'


@pytest.mark.e2e
def test_apache_proxy_ajp_hello(server_factory, apache_factory, upstream_target):
    server = server_factory('ajp-threaded', 'hello', target=upstream_target)
    apache = apache_factory(backend_address(server), proxy='ajp')
    status, headers, body = webservers.http_get(apache.url + '/hello')
    assert status == 200
    assert body == b'Hello, world!\n'


def test_upstream_target_layout(upstream_target):
    assert os.path.isfile(os.path.join(upstream_target, 'flup', 'server', 'fcgi.py'))
    assert os.path.basename(upstream_target).startswith('flup-1.0.')


@pytest.mark.e2e
def test_lighttpd_ajp13_hello(server_factory, lighttpd_factory, upstream_target):
    server = server_factory('ajp-threaded', 'hello', target=upstream_target)
    lighttpd = lighttpd_factory(ajp13=backend_address(server))
    status, headers, body = webservers.http_get(lighttpd.url + '/ajp')
    assert status == 200
    assert body == b'Hello, world!\n'


@pytest.mark.e2e
def test_apache_proxy_scgi_hello(server_factory, apache_factory, upstream_target):
    server = server_factory('scgi-threaded', 'hello', target=upstream_target)
    apache = apache_factory(backend_address(server), proxy='scgi')
    status, headers, body = webservers.http_get(apache.url + '/scgi')
    assert status == 200
    assert body == b'Hello, world!\n'
