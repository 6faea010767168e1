"""flup.client.scgi_app.SCGIApp against this project's own SCGI servers."""

from __future__ import absolute_import

import io
import json
import socket
import threading

import pytest

from flup.client.scgi_app import SCGIApp
from flup.server import scgi
from tests import gateway_wire as wire
from tests.support.servers import free_port


def wsgi_environ(method='GET', path='/', query='', body=b'', **extra):
    environ = {
        'REQUEST_METHOD': method, 'SCRIPT_NAME': '', 'PATH_INFO': path,
        'QUERY_STRING': query, 'SERVER_NAME': 'localhost', 'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1', 'REMOTE_ADDR': '127.0.0.1',
        'CONTENT_LENGTH': str(len(body)) if body else '',
        'wsgi.input': io.BytesIO(body), 'wsgi.errors': io.BytesIO(),
        'wsgi.version': (1, 0), 'wsgi.url_scheme': 'http',
    }
    environ.update(extra)
    return environ


def call(app, environ):
    """Run the WSGI app; return (status, headers, body)."""
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen['status'] = status
        seen['headers'] = headers

    result = app(environ, start_response)
    try:
        body = b''.join(result)
    finally:
        close = getattr(result, 'close', None)
        if close is not None:
            close()
    return seen['status'], seen['headers'], body


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop(timeout=10.0)


@pytest.mark.parametrize('model, bind', [
    ('scgi-threaded', 'tcp'), ('scgi-threaded', 'unix'), ('scgi-prefork', 'tcp'),
])
def test_scgi_app_get_and_post(server_factory, model, bind):
    server = server_factory(model, 'echo', bind=bind)
    address = server.address if bind == 'unix' else tuple(server.address)
    app = SCGIApp(connect=address)
    status, headers, body = call(app, wsgi_environ('GET', '/a/b', 'x=1', HTTP_X_TEST='v'))
    assert status == '200 OK'
    assert ('Content-Type', 'application/json') in headers
    document = json.loads(body.decode('utf-8'))
    assert document['path'] == '/a/b'
    assert document['QUERY_STRING'] == 'x=1'
    assert document['headers']['HTTP_X_TEST'] == 'v'
    payload = b'\x00\xff' * 70000
    status, _, body = call(app, wsgi_environ('POST', '/p', body=payload))
    assert json.loads(body.decode('utf-8'))['body_length'] == len(payload)


def test_scgi_app_host_and_port_keywords(server_factory):
    server = server_factory('scgi-threaded', 'stream')
    app = SCGIApp(host=server.address[0], port=server.address[1])
    status, _, body = call(app, wsgi_environ(query='n=20&size=65536'))
    assert status == '200 OK'
    assert body == b'x' * (20 * 65536)


def test_scgi_app_filter_environ():
    seen = {}

    def backend(environ, start_response):
        seen.clear()
        seen.update(environ)
        start_response('404 Not Found', [])
        return [b'']

    with wire.RunningServer(scgi.WSGIServer, backend) as running:
        extra = {'HTTP_COOKIE': 'a=1', 'CUSTOM_VAR': 'c', 'lower.key': 'x'}
        status = call(SCGIApp(connect=running.address), wsgi_environ(**extra))[0]
        assert status == '404 Not Found'
        assert seen['HTTP_COOKIE'] == 'a=1'
        assert 'CUSTOM_VAR' not in seen
        call(SCGIApp(connect=running.address, filterEnviron=False), wsgi_environ(**extra))
        assert seen['CUSTOM_VAR'] == 'c'
        assert 'lower.key' not in seen


def test_scgi_app_status_without_reason():
    def backend(environ, start_response):
        start_response('200 OK', [])
        return [b'']

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    listener.settimeout(10)
    try:
        app = SCGIApp(connect=listener.getsockname(), timeout=10)

        def serve_one():
            conn, _ = listener.accept()
            conn.settimeout(10)
            conn.recv(65536)
            conn.sendall(b'Status: 404\r\nX-A: b\r\n\r\nmissing')
            conn.close()

        thread = threading.Thread(target=serve_one)
        thread.start()
        status, headers, body = call(app, wsgi_environ())
        thread.join(10)
    finally:
        listener.close()
    assert status == '404 Not Found'
    assert headers == [('X-A', 'b')]
    assert body == b'missing'


def test_scgi_app_backend_down_gives_502():
    app = SCGIApp(connect=('127.0.0.1', free_port()), timeout=5)
    status, _, body = call(app, wsgi_environ())
    assert status == '502 Bad Gateway'
    assert b'cannot be reached' in body


def test_scgi_app_requires_an_address():
    with pytest.raises(ValueError):
        SCGIApp()
