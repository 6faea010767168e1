"""The shared WSGI gateway: environ building, start_response, bodies, errors.

The pure parts are called directly; the rest runs through a threaded
FastCGI server in this process, since that is how applications meet it.
"""

from __future__ import absolute_import

import logging
import os
import subprocess
import sys

import pytest

from flup.server import ClientDisconnected, fcgi
from flup.server._wsgi import (
    Response, build_environ, derive_path_info, error_page, run_application)

from . import fcgi_wire as wire
from .support.inprocess import InProcessServer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve_one(app, params=None, body=b'', **server_keywords):
    """Run ``app`` for one request and return the wire Response."""
    if params is None:
        params = wire.cgi_params(method='POST' if body else 'GET', body=body)
    with InProcessServer(fcgi.WSGIServer, app, **server_keywords) as running:
        with wire.Client(running.address) as client:
            return client.request(params, body=body)


# Environ.

def test_path_info_derived_when_script_name_is_prefix():
    assert derive_path_info('/app', '/app/post/1?x=1') == '/post/1'
    assert derive_path_info('/app', '/app') == ''
    assert derive_path_info('', '/post/1') == '/post/1'


def test_path_info_is_whole_path_after_rewrite():
    # A rewrite in front of the application: the script is not in the path.
    assert derive_path_info('/dispatch.fcgi', '/blog/post/12345') == '/blog/post/12345'
    # A name prefix that is not a path segment does not count.
    assert derive_path_info('/app', '/application/x') == '/application/x'


def test_path_info_is_percent_decoded():
    assert derive_path_info('', '/a%20b/%C3%A9') == '/a b/' + b'\xc3\xa9'.decode('latin-1') \
        if sys.version_info[0] >= 3 else True


def test_environ_from_rewritten_request_has_no_warning():
    errors = []

    class Errors(object):
        def write(self, text):
            errors.append(text)

    environ = build_environ(
        {'SCRIPT_NAME': '/dispatch.fcgi', 'REQUEST_URI': '/blog/post/12345',
         'REQUEST_METHOD': 'GET'},
        error_stream=Errors())
    assert environ['PATH_INFO'] == '/blog/post/12345'
    assert errors == []


def test_environ_keys_and_defaults():
    environ = build_environ({'HTTPS': 'on'}, base_environ={'extra.key': 1},
                            multithread=False, multiprocess=True)
    assert environ['wsgi.version'] == (1, 0)
    assert environ['wsgi.url_scheme'] == 'https'
    assert environ['wsgi.multithread'] is False
    assert environ['wsgi.multiprocess'] is True
    assert environ['wsgi.run_once'] is False
    assert environ['extra.key'] == 1
    for key in ('REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING',
                'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL'):
        assert isinstance(environ[key], str)


def test_environ_values_are_native_strings():
    def app(environ, start_response):
        kinds = set(type(value) for key, value in environ.items()
                    if key.isupper())
        start_response('200 OK', [])
        return [repr(sorted(k.__name__ for k in kinds)).encode('ascii')]

    response = serve_one(app, wire.cgi_params(headers={'X-Test': '\xe9'}))
    assert response.body == b"['str']"


# start_response and the body.

def test_exc_info_after_headers_reraises_original(caplog):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'first chunk'
        try:
            raise KeyError('original')
        except KeyError:
            start_response('500 Internal Server Error', [], sys.exc_info())
        yield b'never sent'

    caplog.set_level(logging.ERROR, logger='flup')
    response = serve_one(app)
    assert response.body == b'first chunk'
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1
    assert errors[0].exc_info[0] is KeyError


def test_exc_info_before_headers_replaces_response():
    def app(environ, start_response):
        start_response('200 OK', [('X-First', '1')])
        try:
            raise ValueError('late')
        except ValueError:
            start_response('503 Service Unavailable', [('X-Second', '1')],
                           sys.exc_info())
        return [b'sorry']

    response = serve_one(app)
    assert response.status == 503
    assert response.header('X-Second') == '1'
    assert response.header('X-First') is None


def test_write_callable_and_iterable_both_sent():
    def app(environ, start_response):
        write = start_response('200 OK', [('Content-Type', 'text/plain')])
        write(b'written ')
        return [b'returned']

    response = serve_one(app)
    assert response.body == b'written returned'
    assert response.header('Content-Length') is None


def test_close_called_on_success_and_error():
    closed = []

    class Body(object):
        def __init__(self, fail):
            self.fail = fail

        def __iter__(self):
            yield b'part'
            if self.fail:
                raise RuntimeError('mid-body')

        def close(self):
            closed.append(self.fail)

    def app(environ, start_response):
        start_response('200 OK', [])
        return Body(environ['PATH_INFO'] == '/fail')

    serve_one(app, wire.cgi_params(path='/ok'))
    serve_one(app, wire.cgi_params(path='/fail'))
    assert closed == [False, True]


def test_content_length_added_for_single_item():
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'twelve bytes']

    response = serve_one(app)
    assert response.header('Content-Length') == '12'


def test_content_length_not_added_for_generators():
    def app(environ, start_response):
        start_response('200 OK', [])
        yield b'a'
        yield b'b'

    response = serve_one(app)
    assert response.header('Content-Length') is None
    assert response.body == b'ab'


def test_empty_body_still_sends_headers():
    def app(environ, start_response):
        start_response('204 No Content', [('X-Empty', 'yes')])
        return []

    response = serve_one(app)
    assert response.status == 204
    assert response.header('X-Empty') == 'yes'
    assert response.header('Content-Length') is None


@pytest.mark.parametrize('bad_app, error_type', [
    ('text_body', TypeError),
    ('second_start', AssertionError),
    ('bad_status', ValueError),
    ('newline_header', ValueError),
    ('no_start', AssertionError),
])
def test_contract_errors_give_500(bad_app, error_type, caplog):
    def app(environ, start_response):
        if bad_app == 'text_body':
            start_response('200 OK', [])
            return [u'text']
        if bad_app == 'second_start':
            start_response('200 OK', [])
            start_response('200 OK', [])
        if bad_app == 'bad_status':
            start_response('OK', [])
        if bad_app == 'newline_header':
            start_response('200 OK', [('X-Bad', 'a\r\nSet-Cookie: x=1')])
        return [b'body']

    caplog.set_level(logging.ERROR, logger='flup')
    response = serve_one(app)
    assert response.status == 500
    logged = [r for r in caplog.records if r.exc_info]
    assert logged[0].exc_info[0] is error_type


def test_contract_errors_survive_optimize_flag():
    script = (
        'import sys; sys.path.insert(0, %r)\n'
        'from flup.server._wsgi import Response\n'
        'r = Response(lambda s, h: None, lambda d, f: None)\n'
        'r.start_response("200 OK", [])\n'
        'try:\n'
        '    r.write(u"text")\n'
        'except TypeError:\n'
        '    print("raised")\n' % REPO_ROOT)
    output = subprocess.check_output([sys.executable, '-O', '-c', script])
    assert output.strip() == b'raised'


# Error pages.

def test_generic_error_page_hides_exception(caplog):
    def app(environ, start_response):
        raise RuntimeError('boom-secret')

    caplog.set_level(logging.ERROR, logger='flup')
    response = serve_one(app)
    assert response.status == 500
    assert b'boom-secret' not in response.body
    assert b'Traceback' not in response.body
    assert b'boom-secret' in response.stderr
    assert any('boom-secret' in (r.exc_text or '') or
               (r.exc_info and 'boom-secret' in str(r.exc_info[1]))
               for r in caplog.records)


def test_debug_error_page_shows_escaped_traceback():
    def app(environ, start_response):
        raise RuntimeError('<b>boom</b>')

    response = serve_one(app, debug=True)
    assert response.status == 500
    assert b'Traceback' in response.body
    assert b'&lt;b&gt;boom&lt;/b&gt;' in response.body


def test_error_page_function_contract():
    try:
        raise ValueError('x')
    except ValueError:
        status, headers, body = error_page(True, sys.exc_info())
    assert status.startswith('500 ')
    assert dict(headers)['Content-Length'] == str(len(body))
    assert isinstance(body, bytes)


# wsgi.input and wsgi.errors.

def test_input_stops_at_content_length():
    def app(environ, start_response):
        stream = environ['wsgi.input']
        first = stream.readline()
        rest = stream.readlines()
        start_response('200 OK', [])
        return [repr((first, rest, stream.read())).encode('ascii')]

    body = b'line one\nline two\nline three'
    params = wire.cgi_params(method='POST', body=body,
                             extra={'CONTENT_LENGTH': '17'})
    response = serve_one(app, params, body=body)
    assert response.body == repr((b'line one\n', [b'line two'], b'')).encode('ascii')


def test_input_iteration_and_sized_reads():
    def app(environ, start_response):
        stream = environ['wsgi.input']
        head = stream.read(3)
        lines = list(stream)
        start_response('200 OK', [])
        return [repr((head, lines)).encode('ascii')]

    body = b'abcdef\nghi\n'
    response = serve_one(app, body=body)
    assert response.body == repr((b'abc', [b'def\n', b'ghi\n'])).encode('ascii')


def test_short_body_raises_client_disconnected():
    outcome = []

    def app(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except ClientDisconnected:
            outcome.append('raised')
        start_response('200 OK', [])
        return [b'']

    params = wire.cgi_params(method='POST', body=b'abc',
                             extra={'CONTENT_LENGTH': '10'})
    serve_one(app, params, body=b'abc')
    assert outcome == ['raised']


def test_wsgi_errors_go_to_stderr_stream():
    def app(environ, start_response):
        environ['wsgi.errors'].write('problem noted\n')
        environ['wsgi.errors'].flush()
        start_response('200 OK', [])
        return [b'ok']

    response = serve_one(app)
    assert response.stderr == b'problem noted\n'
    assert response.body == b'ok'


def test_run_application_unit():
    sent = []
    response = Response(lambda status, headers: sent.append((status, headers)),
                        lambda data, final: sent.append((data, final)))

    def app(environ, start_response):
        start_response('200 OK', [('A', 'b')])
        return [b'one', b'two']

    run_application(app, {'REQUEST_METHOD': 'GET'}, response)
    assert sent == [('200 OK', [('A', 'b')]), (b'one', False), (b'two', True)]


def test_access_line_counts_error_page(caplog):
    def app(environ, start_response):
        raise RuntimeError('boom')

    caplog.set_level(logging.INFO, logger='flup.access')
    response = serve_one(app, wire.cgi_params(path='/broken'))
    lines = [r.getMessage() for r in caplog.records if r.name == 'flup.access']
    assert len(lines) == 1
    method, path, status, size, _ = lines[0].split()
    assert (method, path, status) == ('GET', '/broken', '500')
    assert int(size) == len(response.body)


def test_access_line_quotes_path(caplog):
    caplog.set_level(logging.INFO, logger='flup.access')
    serve_one(lambda environ, start_response: (start_response('200 OK', []), [b''])[1],
              wire.cgi_params(path='/a b\r\nINFO forged'))
    lines = [r.getMessage() for r in caplog.records if r.name == 'flup.access']
    assert len(lines) == 1
    assert lines[0].split()[1] == '/a%20b%0D%0AINFO%20forged'
