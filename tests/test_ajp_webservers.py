"""The AJP 1.3 servers behind Apache httpd ``mod_proxy_ajp`` and lighttpd
``mod_ajp13``.

Each test starts flup.server.ajp or ajp_fork with serve.py and sends HTTP
requests to Apache in front of it.  A missing Apache is an error, never a
skip.
"""

from __future__ import absolute_import

import hashlib
import json

import pytest

from tests import gateway_wire as wire
from tests.support import webservers

pytestmark = pytest.mark.e2e

MODELS = ['ajp-threaded', 'ajp-prefork']
SECRET = 'boom-secret'  # the message of the exception that the 'raise' app raises


def load_json(body):
    return json.loads(body.decode('utf-8'))


@pytest.fixture(params=MODELS)
def model(request):
    return request.param


def pool_kw(model, **extra):
    """Server keywords for ``model``.  Apache pools one connection per
    worker thread, and each kept connection occupies a prefork child, so the
    prefork server gets room for a few."""
    if model == 'ajp-prefork':
        extra.setdefault('maxChildren', 8)
    return extra


def test_apache_ajp_get_post(server_factory, apache_factory, backend_of, model):
    server = server_factory(model, 'echo', kw=pool_kw(model))
    apache = apache_factory(backend_of(server), proxy='ajp')
    for index in range(3):
        status, _, body = webservers.http_get(apache.url + '/a/b%d?x=1' % index,
                                              headers={'X-Test': 'v'})
        assert status == 200
        document = load_json(body)
        assert document['method'] == 'GET'
        assert document['path'] == '/a/b%d' % index
        assert document['QUERY_STRING'] == 'x=1'
        assert document['headers']['HTTP_X_TEST'] == 'v'
    payload = bytes(bytearray(range(256))) * 4096
    status, _, body = webservers.http_post(apache.url + '/upload', payload)
    assert status == 200
    document = load_json(body)
    assert document['body_length'] == len(payload)
    assert document['body_sha1'] == hashlib.sha1(payload).hexdigest()


def test_apache_ajp_chunked_request_body(server_factory, apache_factory, backend_of, model):
    server = server_factory(model, 'read_body', kw=pool_kw(model))
    apache = apache_factory(backend_of(server), proxy='ajp')
    pieces = [bytes(bytearray([65 + i % 26])) * 1000 for i in range(50)]
    status, body = post_chunked(apache.port, '/chunked', pieces)
    assert status == 200
    assert body == b'50000\n'


def post_chunked(port, path, pieces):
    """POST ``pieces`` with Transfer-Encoding: chunked; return (status, body).

    Written on a raw socket because Python 2.7's httplib cannot send a
    chunked request body.
    """
    body = b''.join(('%x\r\n' % len(piece)).encode('ascii') + piece + b'\r\n'
                    for piece in pieces) + b'0\r\n\r\n'
    head = ('POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n'
            'Transfer-Encoding: chunked\r\n\r\n' % (path, port)).encode('ascii')
    sock = wire.connect(('127.0.0.1', port), timeout=20.0)
    try:
        sock.sendall(head + body)
        response = wire.read_until_close(sock)
    finally:
        sock.close()
    head, _, content = response.partition(b'\r\n\r\n')
    status = int(head.split(b' ', 2)[1])
    if b'transfer-encoding: chunked' in head.lower():
        content = decode_chunked(content)
    return status, content


def decode_chunked(data):
    chunks = []
    for _ in range(100000):
        size_line, _, data = data.partition(b'\r\n')
        size = int(size_line.split(b';')[0], 16)
        if size == 0:
            return b''.join(chunks)
        chunks.append(data[:size])
        data = data[size + 2:]
    raise ValueError('chunked response did not end')


def test_apache_ajp_streamed_response(server_factory, apache_factory, backend_of, model):
    server = server_factory(model, 'stream', kw=pool_kw(model))
    apache = apache_factory(backend_of(server), proxy='ajp')
    status, _, body = webservers.http_get(apache.url + '/?n=40&size=65536')
    assert status == 200
    assert body == b'x' * (40 * 65536)


def test_apache_ajp_app_error_gives_500(server_factory, apache_factory, backend_of, model):
    server = server_factory(model, 'raise', kw=pool_kw(model))
    apache = apache_factory(backend_of(server), proxy='ajp')
    status, _, body = webservers.http_get(apache.url + '/')
    assert status == 500
    assert SECRET.encode('ascii') not in body
    assert server.wait_for_log('application error in the request')


def test_apache_ajp_script_name(server_factory, apache_factory, backend_of):
    server = server_factory('ajp-threaded', 'echo', kw={'scriptName': '/app'})
    apache = apache_factory(backend_of(server), proxy='ajp', prefix='/app/')
    document = load_json(webservers.http_get(apache.url + '/app/x%20y')[2])
    assert document['SCRIPT_NAME'] == '/app'
    assert document['PATH_INFO'] == '/x y'


@pytest.mark.hangup
def test_apache_ajp_client_hangups(server_factory, apache_factory, backend_of, model):
    server = server_factory(model, 'stream', kw=pool_kw(model, maxSpare=1))
    apache = apache_factory(backend_of(server), proxy='ajp')
    webservers.http_get(apache.url + '/?n=1&size=10')
    baseline = wire.settled_counts(server.pid)
    for _ in range(10):
        webservers.abort_http(apache.url + '/?n=200&size=65536', 0.05)
    status, _, body = webservers.http_get(apache.url + '/?n=2&size=10')
    assert (status, body) == (200, b'x' * 20)
    # Apache keeps its pooled connection to flup open, so the counts come
    # back to the baseline plus at most that connection.
    counts = wire.wait_back_to(server.pid, (baseline[0] + 1, baseline[1] + 2))
    assert counts[0] <= baseline[0] + 1
    assert counts[1] <= baseline[1] + 2
    assert 'Traceback' not in server.log_text()




def test_lighttpd_ajp13_get(server_factory, lighttpd_factory, backend_of, model):
    # lighttpd 1.4 sends no request URI for this prefix setup, so only the
    # method and the query are checked.
    server = server_factory(model, 'echo', kw=pool_kw(model))
    lighttpd = lighttpd_factory(ajp13=backend_of(server))
    for _ in range(3):
        status, _, body = webservers.http_get(lighttpd.url + '/l?q=2')
        assert status == 200
        document = load_json(body)
        assert document['method'] == 'GET'
        assert document['QUERY_STRING'] == 'q=2'
