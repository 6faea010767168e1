"""The SCGI servers behind real web servers: nginx ``scgi_pass``, lighttpd
``mod_scgi`` and Apache httpd ``mod_proxy_scgi``.

Each test starts flup.server.scgi or scgi_fork with serve.py and sends
HTTP requests to the web server in front of it.  A missing web server is
an error, never a skip.
"""

from __future__ import absolute_import

import hashlib
import json

import pytest

from tests import gateway_wire as wire
from tests.support import webservers

pytestmark = pytest.mark.e2e

MODELS = ['scgi-threaded', 'scgi-prefork']
SECRET = 'boom-secret'  # the message of the exception that the 'raise' app raises


def load_json(body):
    return json.loads(body.decode('utf-8'))


@pytest.fixture(params=MODELS)
def model(request):
    return request.param


def check_requests(url):
    """GET with a query, a 1 MiB POST, a 2.5 MiB streamed reply."""
    status, _, body = webservers.http_get(url + '/a/b?x=1')
    assert status == 200
    document = load_json(body)
    assert document['method'] == 'GET'
    assert document['path'] == '/a/b'
    assert document['QUERY_STRING'] == 'x=1'
    payload = bytes(bytearray(range(256))) * 4096
    status, _, body = webservers.http_post(url + '/upload', payload)
    assert status == 200
    document = load_json(body)
    assert document['body_length'] == len(payload)
    assert document['body_sha1'] == hashlib.sha1(payload).hexdigest()


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_nginx_scgi_get_post(server_factory, nginx_factory, backend_of, model, bind):
    server = server_factory(model, 'echo', bind=bind)
    nginx = nginx_factory(scgi=backend_of(server))
    check_requests(nginx.url)


def test_nginx_scgi_streamed_response(server_factory, nginx_factory, backend_of, model):
    server = server_factory(model, 'stream')
    nginx = nginx_factory(scgi=backend_of(server))
    status, _, body = webservers.http_get(nginx.url + '/?n=40&size=65536')
    assert status == 200
    assert body == b'x' * (40 * 65536)


def test_nginx_scgi_app_error(server_factory, nginx_factory, backend_of, model):
    server = server_factory(model, 'raise')
    nginx = nginx_factory(scgi=backend_of(server))
    status, _, body = webservers.http_get(nginx.url + '/')
    assert status == 500
    assert SECRET.encode('ascii') not in body
    assert server.wait_for_log('application error in the request')


def test_nginx_scgi_script_name(server_factory, nginx_factory, backend_of):
    server = server_factory('scgi-threaded', 'echo')
    nginx = nginx_factory(scgi=backend_of(server), script_name='/app')
    document = load_json(webservers.http_get(nginx.url + '/app/x/y')[2])
    assert document['SCRIPT_NAME'] == '/app'
    assert document['PATH_INFO'] == '/x/y'


def test_nginx_scgi_path_info_omitted(server_factory, nginx_factory, backend_of):
    server = server_factory('scgi-threaded', 'echo')
    nginx = nginx_factory(scgi=backend_of(server), path_info='omit')
    document = load_json(webservers.http_get(nginx.url + '/p/q%20r?z=1')[2])
    assert document['SCRIPT_NAME'] == ''
    assert document['PATH_INFO'] == '/p/q r'


@pytest.mark.hangup
def test_nginx_scgi_client_hangups(server_factory, nginx_factory, backend_of, model):
    server = server_factory(model, 'stream', kw={'maxSpare': 1})
    nginx = nginx_factory(scgi=backend_of(server), request_buffering=False)
    webservers.http_get(nginx.url + '/?n=1&size=10')
    baseline = wire.settled_counts(server.pid)
    for _ in range(10):
        webservers.abort_http(nginx.url + '/?n=200&size=65536', 0.05)
    counts = wire.wait_back_to(server.pid, baseline)
    assert counts[0] <= baseline[0]
    assert counts[1] <= baseline[1]
    status, _, body = webservers.http_get(nginx.url + '/?n=2&size=10')
    assert (status, body) == (200, b'x' * 20)
    assert 'Traceback' not in server.log_text()


@pytest.mark.parametrize('bind', ['tcp', 'unix'])
def test_lighttpd_scgi_get_post(server_factory, lighttpd_factory, backend_of, model, bind):
    server = server_factory(model, 'echo', bind=bind)
    lighttpd = lighttpd_factory(scgi=backend_of(server))
    check_requests(lighttpd.url)


def test_lighttpd_scgi_app_error(server_factory, lighttpd_factory, backend_of):
    server = server_factory('scgi-prefork', 'raise')
    lighttpd = lighttpd_factory(scgi=backend_of(server))
    status, _, body = webservers.http_get(lighttpd.url + '/')
    assert status == 500
    assert SECRET.encode('ascii') not in body


def test_apache_proxy_scgi_get_post(server_factory, apache_factory, backend_of, model):
    server = server_factory(model, 'echo')
    apache = apache_factory(backend_of(server), proxy='scgi')
    check_requests(apache.url)
