"""Tests of flup.client.fcgi_app.FCGIApp over real loopback sockets.

FCGIApp talks to three kinds of backend: flup's threaded FastCGI server
running in a thread of this process, ``php-cgi -b`` (a responder written
elsewhere), and small fake backends that send chosen records built with the
independent encoder in ``tests/fcgi_wire.py``.
"""

from __future__ import absolute_import

import gc
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests import fcgi_wire
from tests.support import procinfo
from tests.support.servers import REPO_ROOT, free_port, unix_socket_path

from flup.client.fcgi_app import BackendError, FCGIApp
from flup.server.fcgi import WSGIServer

BIG = 300 * 1024  # bytes; well over one 64 KiB record in each direction


# Helpers.

class ErrorsStream(object):
    """A ``wsgi.errors`` that keeps what is written."""

    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass

    def getvalue(self):
        return ''.join(self.parts)


def make_environ(method='GET', path='/', query='', body=b'', headers=None,
                 extra=None):
    environ = {
        'REQUEST_METHOD': method,
        'SCRIPT_NAME': '',
        'PATH_INFO': path,
        'QUERY_STRING': query,
        'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1',
        'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http',
        'wsgi.input': io.BytesIO(body),
        'wsgi.errors': ErrorsStream(),
        'wsgi.multithread': True,
        'wsgi.multiprocess': False,
        'wsgi.run_once': False,
    }
    if body:
        environ['CONTENT_LENGTH'] = str(len(body))
        environ['CONTENT_TYPE'] = 'application/octet-stream'
    for name, value in (headers or {}).items():
        environ['HTTP_' + name.upper().replace('-', '_')] = value
    environ.update(extra or {})
    return environ


class Result(object):
    def __init__(self, status, headers, body, errors):
        self.status = status
        self.headers = headers
        self.body = body
        self.errors = errors

    @property
    def code(self):
        return int(self.status.split(' ', 1)[0])

    def header(self, name):
        values = self.header_list(name)
        return values[0] if values else None

    def header_list(self, name):
        return [value for key, value in self.headers
                if key.lower() == name.lower()]


def call(app, environ):
    """Run a WSGI app to the end; return a Result."""
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured['status'] = status
        captured['headers'] = headers

    result = app(environ, start_response)
    try:
        body = b''.join(result)
    finally:
        close = getattr(result, 'close', None)
        if close is not None:
            close()
    return Result(captured['status'], captured['headers'], body,
                  environ['wsgi.errors'].getvalue())


def sha1(data):
    return hashlib.sha1(data).hexdigest()


# A backend application with one behaviour per path.

def backend_app(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path == '/echo':
        body = environ['wsgi.input'].read()
        text = ('method=%s\nlength=%d\nsha1=%s\nquery=%s\nx-test=%s\n'
                % (environ['REQUEST_METHOD'], len(body), sha1(body),
                   environ.get('QUERY_STRING', ''),
                   environ.get('HTTP_X_TEST', '')))
        start_response('200 OK', [('Content-Type', 'text/plain'),
                                  ('Set-Cookie', 'a=1'),
                                  ('Set-Cookie', 'b=2')])
        return [text.encode('ascii')]
    if path == '/stream-echo':
        # Writes output while the body still arrives, so both directions
        # are busy at once.
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        stream = environ['wsgi.input']
        return iter(lambda: stream.read(16384), b'')
    if path == '/big':
        size = int(environ.get('QUERY_STRING') or BIG)
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return [b'b' * size]
    if path.startswith('/status/'):
        status = {'404': '404 Not Found', '204': '204 No Content',
                  '418': "418 I'm a teapot"}[path[len('/status/'):]]
        start_response(status, [('Content-Type', 'text/plain')])
        return [] if status.startswith('204') else [status.encode('ascii')]
    if path == '/redirect':
        start_response('302 Found', [('Location', 'http://localhost/next')])
        return [b'']
    if path == '/raise':
        raise RuntimeError('backend failure for the test')
    if path == '/stderr':
        environ['wsgi.errors'].write('line for stderr\n')
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok']
    if path == '/environ':
        names = sorted(name for name, value in environ.items()
                       if isinstance(value, str))
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [('\n'.join(names) + '\n').encode('latin-1')]
    start_response('404 Not Found', [('Content-Type', 'text/plain')])
    return [b'unknown path']


class ThreadedBackend(object):
    """flup's threaded FastCGI server running in a thread of this process."""

    def __init__(self, bind_address):
        self.address = bind_address
        self.server = WSGIServer(backend_app, bindAddress=bind_address)
        self.thread = threading.Thread(target=self.server.run)
        self.thread.daemon = True

    def start(self):
        self.thread.start()
        deadline = time.time() + 10
        while time.time() < deadline:
            probe = socket.socket(
                socket.AF_UNIX if isinstance(self.address, str)
                else socket.AF_INET)
            try:
                probe.connect(self.address)
                return self
            except socket.error:
                time.sleep(0.02)
            finally:
                probe.close()
        raise RuntimeError('the FastCGI server did not listen on %r'
                           % (self.address,))

    def stop(self):
        self.server.shutdown()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def backend():
    server = ThreadedBackend(('127.0.0.1', free_port())).start()
    yield server
    server.stop()


@pytest.fixture
def client(backend):
    return FCGIApp(connect=backend.address, timeout=10)


# FCGIApp against flup's threaded server.

def test_get_returns_body_and_headers(client):
    result = call(client, make_environ(path='/echo', query='a=1&b=2',
                                       headers={'X-Test': 'hello'}))
    assert result.status == '200 OK'
    assert result.header('Content-Type') == 'text/plain'
    assert b'method=GET\n' in result.body
    assert b'length=0\n' in result.body
    assert b'query=a=1&b=2\n' in result.body
    assert b'x-test=hello\n' in result.body


def test_repeated_headers_kept_in_order(client):
    result = call(client, make_environ(path='/echo'))
    assert result.header_list('Set-Cookie') == ['a=1', 'b=2']


def test_post_body_forwarded(client):
    body = b'name=value&other=\x00\xff'
    result = call(client, make_environ('POST', '/echo', body=body))
    assert b'method=POST\n' in result.body
    assert ('length=%d\n' % len(body)).encode('ascii') in result.body
    assert ('sha1=%s\n' % sha1(body)).encode('ascii') in result.body


def test_large_request_body(client):
    body = os.urandom(BIG)
    result = call(client, make_environ('POST', '/echo', body=body))
    assert ('length=%d\n' % BIG).encode('ascii') in result.body
    assert ('sha1=%s\n' % sha1(body)).encode('ascii') in result.body


def test_large_response_body(client):
    result = call(client, make_environ(path='/big', query=str(BIG)))
    assert result.status == '200 OK'
    assert len(result.body) == BIG
    assert result.body == b'b' * BIG


def test_large_bodies_both_ways_at_once(client):
    body = os.urandom(4 * 1024 * 1024)
    result = call(client, make_environ('POST', '/stream-echo', body=body))
    assert result.status == '200 OK'
    assert len(result.body) == len(body)
    assert result.body == body


@pytest.mark.parametrize('path, status', [
    ('/status/404', '404 Not Found'),
    ('/status/204', '204 No Content'),
    ('/status/418', "418 I'm a teapot"),
    ('/redirect', '302 Found'),
    ('/raise', '500 Internal Server Error'),
])
def test_status_passed_through(client, path, status):
    result = call(client, make_environ(path=path))
    assert result.status == status


def test_redirect_keeps_location(client):
    result = call(client, make_environ(path='/redirect'))
    assert result.header('Location') == 'http://localhost/next'


def test_backend_stderr_copied_to_wsgi_errors(client):
    result = call(client, make_environ(path='/stderr'))
    assert result.body == b'ok'
    assert 'line for stderr' in result.errors


def test_filter_environ_sends_cgi_variables_only(backend):
    app = FCGIApp(connect=backend.address)
    environ = make_environ(path='/environ', headers={'Proxy': 'evil',
                                                     'X-Test': 'kept'},
                           extra={'MY_SETTING': 'private',
                                  'SCRIPT_FILENAME': '/srv/app.php'})
    names = call(app, environ).body.decode('latin-1').split()
    assert 'HTTP_X_TEST' in names
    assert 'SCRIPT_FILENAME' in names
    assert 'REQUEST_METHOD' in names
    assert 'REQUEST_URI' in names
    assert 'MY_SETTING' not in names
    assert 'HTTP_PROXY' not in names


def test_unfiltered_environ_sends_every_string(backend):
    app = FCGIApp(connect=backend.address, filterEnviron=False)
    environ = make_environ(path='/environ', extra={'MY_SETTING': 'private'})
    names = call(app, environ).body.decode('latin-1').split()
    assert 'MY_SETTING' in names
    assert 'wsgi.url_scheme' in names


def test_host_and_port_keywords(backend):
    host, port = backend.address
    app = FCGIApp(host=host, port=port)
    assert call(app, make_environ(path='/echo')).status == '200 OK'


def test_unix_socket_backend(tmp_path):
    path = unix_socket_path(str(tmp_path), 'backend.sock')
    server = ThreadedBackend(path).start()
    try:
        result = call(FCGIApp(connect=path), make_environ(path='/echo'))
    finally:
        server.stop()
    assert result.status == '200 OK'
    assert b'method=GET\n' in result.body


def test_concurrent_requests(client):
    results = []

    def worker(index):
        body = (u'%d' % index).encode('ascii') * 1000
        result = call(client, make_environ('POST', '/echo', body=body))
        results.append(('sha1=%s' % sha1(body)).encode('ascii') in result.body)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [True] * 8


@pytest.mark.parametrize('model', ['threaded', 'prefork', 'single'])
def test_server_process_models(server_factory, model):
    server = server_factory(model, 'echo')
    body = os.urandom(BIG)
    result = call(FCGIApp(connect=server.address),
                  make_environ('POST', '/sub/process', body=body))
    assert result.status == '200 OK'
    document = json.loads(result.body.decode('utf-8'))
    assert document['method'] == 'POST'
    assert document['PATH_INFO'] == '/sub/process'
    assert document['body_length'] == BIG
    assert document['body_sha1'] == sha1(body)


@pytest.mark.parametrize('keywords', [
    {},
    {'connect': ('127.0.0.1', 9), 'host': '127.0.0.1', 'port': 9},
    {'host': '127.0.0.1'},
    {'command': ['true'], 'connect': ('127.0.0.1', 9)},
])
def test_constructor_rejects_bad_keywords(keywords):
    with pytest.raises(TypeError):
        FCGIApp(**keywords)


# Failures, with fake backends built from tests/fcgi_wire.py.

class FakeBackend(object):
    """Accept one connection, read the request, then run ``behaviour(sock)``."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.address = self.listener.getsockname()
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        try:
            sock, _ = self.listener.accept()
        except socket.timeout:
            return
        try:
            sock.settimeout(10)
            self.behaviour(sock)
        except socket.error:
            pass
        finally:
            sock.close()

    def close(self):
        self.thread.join(15)
        self.listener.close()


def read_request(sock):
    """Read records until the empty FCGI_STDIN record; return them."""
    buffer = b''
    deadline = time.time() + 10
    while time.time() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        records = _complete_records(buffer)
        if any(rec.type == fcgi_wire.STDIN and not rec.content
               for rec in records):
            return records
    raise AssertionError('the request did not end with an empty FCGI_STDIN')


def _complete_records(buffer):
    records = []
    pos = 0
    while True:
        parsed = fcgi_wire._parse_one(buffer, pos)
        if parsed is None:
            return records
        rec, pos = parsed
        records.append(rec)


def with_fake(behaviour, environ=None, timeout=10):
    fake = FakeBackend(behaviour)
    try:
        app = FCGIApp(connect=fake.address, timeout=timeout)
        return call(app, environ or make_environ())
    finally:
        fake.close()


def test_request_records_are_well_formed():
    seen = {}

    def behaviour(sock):
        records = read_request(sock)
        seen['records'] = records
        sock.sendall(fcgi_wire.stdout(1, b'Status: 200 OK\r\n\r\nok')
                     + fcgi_wire.stdout(1, b'')
                     + fcgi_wire.end_request(1))

    body = b'x' * 70000
    result = with_fake(behaviour, make_environ('POST', '/p', body=body))
    assert result.body == b'ok'
    records = seen['records']
    assert records[0].type == fcgi_wire.BEGIN_REQUEST
    assert fcgi_wire.parse_begin(records[0].content) == (fcgi_wire.RESPONDER, 0)
    params_content = b''.join(rec.content for rec in records
                              if rec.type == fcgi_wire.PARAMS)
    params = dict(fcgi_wire.parse_pairs(params_content))
    assert params[b'CONTENT_LENGTH'] == b'70000'
    assert params[b'REQUEST_METHOD'] == b'POST'
    assert params[b'REQUEST_URI'] == b'/p'
    stdin = b''.join(rec.content for rec in records
                     if rec.type == fcgi_wire.STDIN)
    assert stdin == body
    assert all(rec.request_id == 1 for rec in records)


def test_status_without_reason_gets_one():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.stdout(1, b'Status: 404\nX-A: 1\n\nmissing')
                     + fcgi_wire.end_request(1))

    result = with_fake(behaviour)
    assert result.status == '404 Not Found'
    assert result.header('X-A') == '1'
    assert result.body == b'missing'


def test_hop_by_hop_headers_dropped():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.stdout(
            1, b'Connection: close\r\nTransfer-Encoding: chunked\r\n'
               b'X-Kept: yes\r\n\r\nbody') + fcgi_wire.end_request(1))

    result = with_fake(behaviour)
    assert result.header('Connection') is None
    assert result.header('Transfer-Encoding') is None
    assert result.header('X-Kept') == 'yes'


def test_head_split_across_records():
    def behaviour(sock):
        read_request(sock)
        head = b'Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n'
        for index in range(len(head)):
            sock.sendall(fcgi_wire.stdout(1, head[index:index + 1]))
        sock.sendall(fcgi_wire.stdout(1, b'done') + fcgi_wire.end_request(1))

    result = with_fake(behaviour)
    assert result.status == '201 Created'
    assert result.body == b'done'


def test_unreachable_backend_gives_502():
    app = FCGIApp(connect=('127.0.0.1', free_port()), timeout=5)
    result = call(app, make_environ())
    assert result.status == '502 Bad Gateway'


def test_silent_backend_gives_504():
    def behaviour(sock):
        read_request(sock)
        time.sleep(1.5)

    started = time.time()
    result = with_fake(behaviour, timeout=0.5)
    assert result.status == '504 Gateway Timeout'
    assert time.time() - started < 5


def test_invalid_record_version_gives_502():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.record(fcgi_wire.STDOUT, 1, b'x', version=2))

    assert with_fake(behaviour).status == '502 Bad Gateway'


def test_close_before_head_gives_502():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.stdout(1, b'Status: 200 OK\r\n'))

    assert with_fake(behaviour).status == '502 Bad Gateway'


def test_end_without_output_gives_502():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.end_request(1))

    assert with_fake(behaviour).status == '502 Bad Gateway'


def test_overloaded_backend_gives_503():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.end_request(
            1, protocol_status=fcgi_wire.OVERLOADED))

    assert with_fake(behaviour).status == '503 Service Unavailable'


def test_invalid_header_line_gives_502():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.stdout(1, b'no colon here\r\n\r\nbody')
                     + fcgi_wire.end_request(1))

    assert with_fake(behaviour).status == '502 Bad Gateway'


def test_truncated_body_raises():
    def behaviour(sock):
        read_request(sock)
        sock.sendall(fcgi_wire.stdout(1, b'Status: 200 OK\r\n\r\npart'))

    fake = FakeBackend(behaviour)
    try:
        app = FCGIApp(connect=fake.address, timeout=5)
        statuses = []
        result = app(make_environ(), lambda status, headers: statuses.append(status))
        try:
            with pytest.raises(BackendError):
                b''.join(result)
        finally:
            result.close()
    finally:
        fake.close()
    assert statuses == ['200 OK']


def test_response_before_body_is_read():
    # The backend answers and closes without reading the body; the
    # response still reaches the client.
    def behaviour(sock):
        sock.recv(100)
        sock.sendall(fcgi_wire.stdout(1, b'Status: 413 Too Large\r\n\r\nno')
                     + fcgi_wire.end_request(1))
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)

    body = b'y' * (8 * 1024 * 1024)
    result = with_fake(behaviour, make_environ('POST', '/', body=body))
    assert result.status == '413 Too Large'
    assert result.body == b'no'


def test_short_request_body_gives_400(backend):
    environ = make_environ('POST', '/echo', body=b'abc')
    environ['CONTENT_LENGTH'] = '10'
    result = call(FCGIApp(connect=backend.address), environ)
    assert result.status == '400 Bad Request'


def test_socket_closed_after_each_request(backend):
    app = FCGIApp(connect=backend.address)
    before = procinfo.fd_count(os.getpid())
    for _ in range(20):
        call(app, make_environ(path='/echo'))
    after = procinfo.fd_count(os.getpid())
    assert after - before < 5


# command= spawning.

SPAWNED_BACKEND = (
    'import sys; sys.path.insert(0, %r); '
    'from flup.server.fcgi import WSGIServer; '
    'from flup.demo import application; '
    'WSGIServer(application).run()' % REPO_ROOT)


def pid_alive(pid):
    # FCGIApp waits for the backend it started, so a stopped backend is
    # reaped and its pid no longer exists.
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_command_spawns_and_stops_backend():
    app = FCGIApp(command=[sys.executable, '-c', SPAWNED_BACKEND])
    pid = app._backend.process.pid
    try:
        result = call(app, make_environ(path='/spawned', query='q=1'))
        assert result.status == '200 OK'
        assert b'/spawned' in result.body
        assert b'q=1' in result.body
    finally:
        app.close()
    assert not pid_alive(pid)


def test_command_backend_stopped_when_collected():
    app = FCGIApp(command=[sys.executable, '-c', SPAWNED_BACKEND])
    pid = app._backend.process.pid
    assert call(app, make_environ()).status == '200 OK'
    del app
    gc.collect()
    assert not pid_alive(pid)


# php-cgi, a FastCGI responder written elsewhere.

PHP_SCRIPT = b"""<?php
header('X-Php: yes');
if (isset($_GET['status'])) { http_response_code((int)$_GET['status']); }
$body = file_get_contents('php://input');
echo "method=" . $_SERVER['REQUEST_METHOD'] . "\\n";
echo "length=" . strlen($body) . "\\n";
echo "sha1=" . sha1($body) . "\\n";
$test = isset($_SERVER['HTTP_X_TEST']) ? $_SERVER['HTTP_X_TEST'] : '';
echo "x-test=" . $test . "\\n";
if (isset($_GET['big'])) { echo str_repeat('p', (int)$_GET['big']); }
error_log('php stderr line');
"""


@pytest.fixture(scope='module')
def php_backend():
    php_cgi = shutil.which('php-cgi') if hasattr(shutil, 'which') else None
    if php_cgi is None:
        for folder in os.environ.get('PATH', '').split(os.pathsep):
            candidate = os.path.join(folder, 'php-cgi')
            if os.access(candidate, os.X_OK):
                php_cgi = candidate
                break
    assert php_cgi is not None, (
        'php-cgi not found: install it (Debian: apt-get install php-cgi)')
    folder = tempfile.mkdtemp(prefix='flup-php-')
    script = os.path.join(folder, 'test.php')
    with open(script, 'wb') as handle:
        handle.write(PHP_SCRIPT)
    port = free_port()
    env = dict(os.environ, PHP_FCGI_CHILDREN='0', PHP_FCGI_MAX_REQUESTS='0')
    with open(os.devnull, 'rb') as devnull:
        process = subprocess.Popen([php_cgi, '-b', '127.0.0.1:%d' % port],
                                   env=env, stdin=devnull)
    deadline = time.time() + 10
    while time.time() < deadline:
        assert process.poll() is None, 'php-cgi exited with %s' % process.returncode
        probe = socket.socket()
        try:
            probe.connect(('127.0.0.1', port))
            break
        except socket.error:
            time.sleep(0.05)
        finally:
            probe.close()
    yield ('127.0.0.1', port), script
    process.send_signal(signal.SIGTERM)
    for _ in range(100):
        if process.poll() is not None:
            break
        time.sleep(0.05)
    else:
        process.kill()
        process.wait()
    shutil.rmtree(folder, ignore_errors=True)


def php_environ(script, method='GET', query='', body=b'', headers=None):
    return make_environ(method, '', query=query, body=body, headers=headers,
                        extra={'SCRIPT_FILENAME': script,
                               'SCRIPT_NAME': '/test.php'})


def test_php_get(php_backend):
    address, script = php_backend
    result = call(FCGIApp(connect=address),
                  php_environ(script, headers={'X-Test': 'from-test'}))
    assert result.status == '200 OK'
    assert result.header('X-Php') == 'yes'
    assert b'method=GET\n' in result.body
    assert b'x-test=from-test\n' in result.body
    assert 'php stderr line' in result.errors


def test_php_large_post(php_backend):
    address, script = php_backend
    body = os.urandom(BIG)
    result = call(FCGIApp(connect=address),
                  php_environ(script, 'POST', query='big=%d' % BIG, body=body))
    assert result.status == '200 OK'
    assert ('length=%d\n' % BIG).encode('ascii') in result.body
    assert ('sha1=%s\n' % sha1(body)).encode('ascii') in result.body
    assert result.body.endswith(b'p' * BIG)


def test_php_status(php_backend):
    address, script = php_backend
    result = call(FCGIApp(connect=address),
                  php_environ(script, query='status=404'))
    assert result.status == '404 Not Found'


def test_php_missing_script(php_backend):
    address, script = php_backend
    result = call(FCGIApp(connect=address),
                  php_environ(script + '.missing'))
    assert result.code == 404
